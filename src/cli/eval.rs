//! `neuronpath eval`: accuracy of a model on the Fashion-MNIST test split, the model loaded the
//! way every command loads it.
use super::plans::EvalPlan;
use crate::format::pct;
use crate::io::fashion_mnist::{self, FashionMnist, Split, CLASS_NAMES, MEAN, STD};
use crate::model::{load_model, LoadOptions};
use crate::training;

pub fn run(plan: &EvalPlan) -> anyhow::Result<()> {
    let loaded = load_model(&plan.model, &LoadOptions::default())?;
    let c = &loaded.model.cfg;
    anyhow::ensure!(
        c.image_size == fashion_mnist::SIDE
            && c.channels == 3
            && c.num_classes == CLASS_NAMES.len(),
        "{}: a {}x{} model with {} channels and {} classes cannot take Fashion-MNIST \
         (28x28 RGB, 10 classes)",
        plan.model.display(),
        c.image_size,
        c.image_size,
        c.channels,
        c.num_classes
    );
    // The IDX pixels are fed normalised as the shipped model was trained; a model recording
    // another normalisation would be measured on inputs it does not expect.
    let expected = [[f64::from(MEAN); 3], [f64::from(STD); 3]];
    if let Some(n) = loaded.normalization {
        anyhow::ensure!(
            n == expected,
            "{}: expects mean {:?} / std {:?}; eval feeds Fashion-MNIST normalised with 0.5 / 0.5",
            plan.model.display(),
            n[0],
            n[1]
        );
    }
    let test = FashionMnist::load(&plan.data, Split::Test)?;
    let ev = training::evaluate(&loaded.model, &test, plan.batch)?;
    // Two decimals for the whole split, as the model card states it: 10,000 images resolve
    // 0.01%, and `.ci/run` compares this figure with the card's.
    println!(
        "{}: test accuracy {:.2}% ({} / {})",
        plan.model.display(),
        100.0 * ev.accuracy(),
        ev.correct.iter().sum::<usize>(),
        test.len()
    );
    for (i, name) in CLASS_NAMES.iter().enumerate() {
        println!(
            "  {i} {name:<12} {:>6} ({} / {})",
            pct(ev.class_accuracy(i)),
            ev.correct[i],
            ev.total[i]
        );
    }
    Ok(())
}
