//! `neuronpath train`: trains a ViT on Fashion-MNIST (how the embedded model was made), a linear
//! probe on a frozen backbone (`--backbone DIR --head-only`), or exports the sample images.
use super::plans::{RecipeOverrides, TrainPlan, TrainWork};
use crate::io::fashion_mnist::{self, FashionMnist, Split};
use crate::output::{Kind, OutputError, Outputs};
use crate::setup::ModelSpec;
use crate::training::probe::{self, ProbeInput, ProbeRecipe};
use crate::training::{self, Recipe, TrainOptions};
use anyhow::Context;
use serde_json::json;
use std::path::Path;
use std::time::Instant;

/// Refuses, before anything is read or computed, outputs that are inputs or lie inside an input
/// folder (the data, the backbone), and existing files that are not train's own earlier outputs
/// unless `--force`: the saved model (marked), its config, preprocessor config and card (ours
/// when the model is), a checkpoint (ours when its state reads as one), the probe's summary and
/// feature caches (marked).
fn check_outputs(plan: &TrainPlan) -> anyhow::Result<()> {
    if matches!(plan.work, TrainWork::ExportSamples { .. }) {
        return Ok(());
    }
    let mut g = Outputs::new(plan.force);
    g.input(&plan.data);
    let model = plan.out.join("model");
    let st = model.join("model.safetensors");
    if let TrainWork::Probe { backbone, .. } = &plan.work {
        g.inputs(&backbone.path);
        let features = plan.out.join("features");
        for f in ["train.safetensors", "test.safetensors"] {
            g.check(&features.join(f), Kind::Model)?;
        }
        g.check(&plan.out.join("probe.json"), Kind::Json)?;
    }
    g.check(&st, Kind::Model)?;
    for f in ["config.json", "preprocessor_config.json", "README.md"] {
        g.check(&model.join(f), Kind::Beside(st.clone()))?;
    }
    if let TrainWork::Train { .. } = &plan.work {
        let ckpt = plan.out.join("checkpoint");
        let ours = training::checkpoint_recipe(&ckpt).is_ok();
        for f in training::CHECKPOINT_FILES {
            let p = ckpt.join(f);
            if p.is_file() && !ours && !plan.force {
                return Err(OutputError::Foreign {
                    path: p,
                    kind: "training checkpoint",
                }
                .into());
            }
            // Inputs, folders and repeats are refused whatever the checkpoint holds.
            match g.check(&p, Kind::Beside(st.clone())) {
                Err(OutputError::Foreign { .. }) => {}
                r => r?,
            }
        }
    }
    Ok(())
}

pub fn run(plan: &TrainPlan) -> anyhow::Result<()> {
    check_outputs(plan)?;
    match &plan.work {
        TrainWork::ExportSamples { dir, per_class } => export(plan, dir, *per_class),
        TrainWork::Train {
            overrides,
            resume,
            stop_after,
        } => train(plan, overrides, *resume, *stop_after),
        TrainWork::Probe {
            backbone,
            recipe,
            limit,
            test_limit,
            force,
        } => head_only(plan, backbone, recipe, *limit, *test_limit, *force),
    }
}

/// The sample PNGs and `classes.json`, all checked before any is written: an existing file is
/// replaced only when it holds exactly what would be written (an earlier export) or with
/// `--force`; never one inside `--data`.
fn export(plan: &TrainPlan, dir: &Path, per_class: usize) -> anyhow::Result<()> {
    let test = FashionMnist::load(&plan.data, Split::Test)?;
    let mut files = fashion_mnist::sample_pngs(&test, &dir.join("samples"), per_class)?;
    let classes = dir.join("classes.json");
    files.push((
        classes.clone(),
        fashion_mnist::class_names_json().into_bytes(),
    ));
    let mut g = Outputs::new(plan.force);
    g.input(&plan.data);
    for (path, bytes) in &files {
        match g.check(path, Kind::Beside(classes.clone())) {
            Err(OutputError::Foreign { .. }) if holds(path, bytes) => {}
            r => r?,
        }
    }
    fashion_mnist::write_files(&files)?;
    println!(
        "wrote {} sample images and classes.json into {}",
        files.len() - 1,
        dir.display()
    );
    Ok(())
}

/// Whether the regular file at `path` holds exactly `bytes` (reads at most one byte more).
fn holds(path: &Path, bytes: &[u8]) -> bool {
    use std::io::Read;
    let Ok(f) = crate::limits::open_regular(path) else {
        return false;
    };
    let mut have = Vec::with_capacity(bytes.len());
    f.take(bytes.len() as u64 + 1)
        .read_to_end(&mut have)
        .is_ok_and(|_| have == bytes)
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

/// `--backbone DIR --head-only`: the linear probe.
fn head_only(
    plan: &TrainPlan,
    spec: &ModelSpec,
    recipe: &ProbeRecipe,
    limit: Option<usize>,
    test_limit: Option<usize>,
    force: bool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    recipe.check()?;
    let loaded = spec.load(false)?;
    let backbone = &loaded.model;
    probe::check_writable(backbone, loaded.family, recipe.input)?;
    let dest = plan.out.join("model");
    if dest.exists() && !force {
        anyhow::bail!("{} exists; pass --force to replace it", dest.display());
    }
    let pre = spec.preprocess(&loaded)?;
    let mut train = FashionMnist::load(&plan.data, Split::Train)?;
    if let Some(n) = limit {
        train = train.truncate(n);
    }
    let mut test = FashionMnist::load(&plan.data, Split::Test)?;
    if let Some(n) = test_limit {
        test = test.truncate(n);
    }
    let c = &backbone.cfg;
    eprintln!(
        "linear probe on {} ({:?}, {} layers, hidden {}, {}x{} input, {:?}): {} train / {} test images, features {:?} of width {}",
        spec.name(),
        loaded.family,
        c.layers,
        c.hidden,
        c.image_size,
        c.image_size,
        spec.dtype,
        train.len(),
        test.len(),
        recipe.input,
        recipe.input.width(c.hidden)
    );
    let cache = plan.out.join("features");
    let train_f = probe::cached_features(
        &cache.join("train.safetensors"),
        backbone,
        &train,
        recipe.input,
        pre.norm,
        "train features",
        true,
    )?;
    let test_f = probe::cached_features(
        &cache.join("test.safetensors"),
        backbone,
        &test,
        recipe.input,
        pre.norm,
        "test features",
        true,
    )?;
    let (head, history) = probe::fit(&train_f, fashion_mnist::CLASS_NAMES.len(), recipe, true)?;
    let (train_acc, test_acc) = (head.accuracy(&train_f), head.accuracy(&test_f));
    let model = probe::probe_model(backbone, &head, recipe.input)?;
    let [mean, std] = pre.norm.mean_std_f64();
    let preprocessing = crate::model::save::Preprocessing {
        image_mean: mean,
        image_std: std,
        size: c.image_size,
    };
    let command = format!(
        "neuronpath train --backbone {} --head-only --probe-input {} --data {} --out {} \\\n  \
         --epochs {} --batch {} --lr {} --wd {} --seed {}{}{} --dtype {} --image-size {}",
        spec.name(),
        match recipe.input {
            ProbeInput::Cls => "cls",
            ProbeInput::ClsMeanPatch => "cls-mean-patch",
        },
        plan.data.display(),
        plan.out.display(),
        recipe.epochs,
        recipe.batch,
        recipe.lr,
        recipe.weight_decay,
        recipe.seed,
        limit.map(|n| format!(" --limit {n}")).unwrap_or_default(),
        test_limit
            .map(|n| format!(" --test-limit {n}"))
            .unwrap_or_default(),
        spec.dtype,
        c.image_size,
    );
    let card = format!(
        "# Linear probe on {}\n\n\
         The frozen backbone `{}` ({:?}) with a linear classifier trained on its {:?} features of\n\
         Fashion-MNIST ({} training images, upsampled to {}x{}, grey to RGB, {} normalisation).\n\n\
         | split | images | accuracy |\n|---|---|---|\n| train | {} | {:.2}% |\n| test | {} | {:.2}% |\n\n\
         Made with:\n\n```\n{}\n```\n",
        spec.name(),
        spec.name(),
        loaded.family,
        recipe.input,
        train.len(),
        c.image_size,
        c.image_size,
        pre.norm,
        train.len(),
        100.0 * train_acc,
        test.len(),
        100.0 * test_acc,
        command
    );
    probe::write_probe_model(&dest, &model, loaded.family, &preprocessing, &card, force)
        .with_context(|| format!("writing {}", dest.display()))?;
    let summary = json!({
        "backbone": spec.name(),
        "family": format!("{:?}", loaded.family),
        "recipe": recipe,
        "image_size": c.image_size,
        "normalization": pre.norm.to_string(),
        "train_images": train.len(),
        "test_images": test.len(),
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "final_loss": history.last().map(|e| e.loss),
        "seconds": start.elapsed().as_secs_f64(),
        "command": command,
    });
    let summary_path = plan.out.join("probe.json");
    crate::output::write_atomic(
        &summary_path,
        crate::output::mark_json("probe", &summary).as_bytes(),
    )
    .with_context(|| format!("writing {}", summary_path.display()))?;
    println!(
        "linear probe: train accuracy {:.2}% ({} images), test accuracy {:.2}% ({} images); model written to {} ({:.1} min)",
        100.0 * train_acc,
        train.len(),
        100.0 * test_acc,
        test.len(),
        dest.display(),
        start.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}
