//! `neuronpath eval`: accuracy of a model on the Fashion-MNIST test split, the model loaded the
//! way every command loads it.
use crate::io::fashion_mnist::{self, FashionMnist, Split, CLASS_NAMES, MEAN, STD};
use crate::model::{load_model, LoadOptions};
use crate::training;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint (e.g. assets/fashion-mnist/model).
    #[arg(long)]
    pub model: PathBuf,
    /// Folder with the Fashion-MNIST IDX .gz files.
    #[arg(long, default_value = fashion_mnist::DEFAULT_DIR)]
    pub data: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let loaded = load_model(&args.model, &LoadOptions::default())?;
    let c = &loaded.model.cfg;
    anyhow::ensure!(
        c.image_size == fashion_mnist::SIDE
            && c.channels == 3
            && c.num_classes == CLASS_NAMES.len(),
        "{}: a {}x{} model with {} channels and {} classes cannot take Fashion-MNIST \
         (28x28 RGB, 10 classes)",
        args.model.display(),
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
            args.model.display(),
            n[0],
            n[1]
        );
    }
    let test = FashionMnist::load(&args.data, Split::Test)?;
    let ev = training::evaluate(&loaded.model, &test, args.batch)?;
    println!(
        "{}: test accuracy {:.2}% ({} / {})",
        args.model.display(),
        100.0 * ev.accuracy(),
        ev.correct.iter().sum::<usize>(),
        test.len()
    );
    for (i, name) in CLASS_NAMES.iter().enumerate() {
        println!(
            "  {i} {name:<12} {:>6.2}% ({} / {})",
            100.0 * ev.class_accuracy(i),
            ev.correct[i],
            ev.total[i]
        );
    }
    Ok(())
}
