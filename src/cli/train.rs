//! `neuronpath train`: trains a ViT on Fashion-MNIST (how the embedded model was made), or
//! exports the sample images shipped with it.
use super::plans::{RecipeOverrides, TrainPlan, TrainWork};
use crate::io::fashion_mnist::{self, FashionMnist, Split};
use crate::training::{self, Recipe, TrainOptions};
use anyhow::Context;
use std::path::Path;

pub fn run(plan: &TrainPlan) -> anyhow::Result<()> {
    match &plan.work {
        TrainWork::ExportSamples { dir, per_class } => export(plan, dir, *per_class),
        TrainWork::Train {
            overrides,
            resume,
            stop_after,
        } => train(plan, overrides, *resume, *stop_after),
    }
}

fn export(plan: &TrainPlan, dir: &Path, per_class: usize) -> anyhow::Result<()> {
    let test = FashionMnist::load(&plan.data, Split::Test)?;
    let written = fashion_mnist::export_samples(&test, &dir.join("samples"), per_class)?;
    fashion_mnist::write_class_names(&dir.join("classes.json"))?;
    println!(
        "wrote {} sample images and classes.json into {}",
        written.len(),
        dir.display()
    );
    Ok(())
}

fn train(
    plan: &TrainPlan,
    overrides: &RecipeOverrides,
    resume: bool,
    stop_after: Option<usize>,
) -> anyhow::Result<()> {
    let ckpt = plan.out.join("checkpoint");
    let recipe = if resume {
        let saved = training::checkpoint_recipe(&ckpt)?;
        let asked = overrides.apply(saved.clone());
        anyhow::ensure!(
            asked == saved,
            "--resume: the options given differ from the checkpoint's recipe {saved:?}"
        );
        saved
    } else {
        overrides.apply(Recipe::default())
    };
    let mut train = FashionMnist::load(&plan.data, Split::Train)?;
    if let Some(n) = recipe.limit {
        train = train.truncate(n);
    }
    let test = FashionMnist::load(&plan.data, Split::Test)?;
    eprintln!(
        "training on {} images, {} epochs of {} steps; checkpoints in {}",
        train.len(),
        recipe.epochs,
        recipe.steps_per_epoch(train.len()),
        ckpt.display()
    );
    let opts = TrainOptions {
        resume,
        progress: true,
        stop_after,
    };
    let trained = training::train(&recipe, &train, &ckpt, &opts)?;
    if trained.history.len() < recipe.epochs {
        println!(
            "stopped after epoch {} of {}; continue with --resume",
            trained.history.len(),
            recipe.epochs
        );
        return Ok(());
    }
    let ev = training::evaluate(&trained.vit(), &test, 500)?;
    let command = reproduce_command(&recipe, plan);
    let model_dir = plan.out.join("model");
    training::write_model(&model_dir, &trained, &recipe, &ev, &command)
        .with_context(|| format!("writing {}", model_dir.display()))?;
    println!(
        "test accuracy {:.2}% ({} images); model written to {} ({:.1} min of training)",
        100.0 * ev.accuracy(),
        test.len(),
        model_dir.display(),
        trained.seconds() / 60.0
    );
    Ok(())
}

/// The `neuronpath train` command of `recipe`, every option spelled out (defaults may change).
fn reproduce_command(r: &Recipe, plan: &TrainPlan) -> String {
    let a = &r.arch;
    let mut c = format!(
        "neuronpath train --data {} --out {} --epochs {} --batch {} --lr {} --wd {} \\\n  \
         --warmup-epochs {} --seed {} --patch-size {} --hidden {} --layers {} --heads {} --mlp-dim {}",
        plan.data.display(),
        plan.out.display(),
        r.epochs,
        r.batch,
        r.lr,
        r.weight_decay,
        r.warmup_epochs,
        r.seed,
        a.patch_size,
        a.hidden,
        a.layers,
        a.heads,
        a.mlp_dim
    );
    if let Some(n) = r.limit {
        c += &format!(" --limit {n}");
    }
    c
}
