//! `neuronpath train`: trains a ViT on Fashion-MNIST (how the embedded model was made), or
//! exports the sample images shipped with it.
use crate::io::fashion_mnist::{self, FashionMnist, Split};
use crate::training::{self, Recipe, TrainOptions};
use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Folder with the Fashion-MNIST IDX .gz files.
    #[arg(long, default_value = fashion_mnist::DEFAULT_DIR)]
    pub data: PathBuf,
    /// Output folder: `checkpoint/` (after every epoch) and `model/` (Hugging Face folder + card).
    #[arg(long, default_value = "out/fashion-mnist")]
    pub out: PathBuf,
    /// Epochs [default: 20].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size [default: 128].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Peak learning rate [default: 2e-3].
    #[arg(long)]
    pub lr: Option<f64>,
    /// AdamW weight decay on weight matrices [default: 0.05].
    #[arg(long)]
    pub wd: Option<f64>,
    /// Linear warm-up length in epochs [default: 1].
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// Seed of all randomness [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Train on the first N training images only (tests, timing).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Patch size [default: 7].
    #[arg(long)]
    pub patch_size: Option<usize>,
    /// Hidden size [default: 64].
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Encoder blocks [default: 6].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Attention heads [default: 4].
    #[arg(long)]
    pub heads: Option<usize>,
    /// MLP hidden units [default: 256].
    #[arg(long)]
    pub mlp_dim: Option<usize>,
    /// Continue from the checkpoint in `<out>/checkpoint` (its recipe; options given must match).
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs (checkpointed; the schedule still spans --epochs): split a
    /// long run, then `--resume`.
    #[arg(long, value_name = "N")]
    pub stop_after: Option<usize>,
    /// Do not train: write the first `--per-class` test images of each class as PNGs into
    /// `DIR/samples/<class>/` and the class names into DIR/classes.json.
    #[arg(long, value_name = "DIR")]
    pub export_samples: Option<PathBuf>,
    /// Sample images per class for --export-samples.
    #[arg(long, default_value_t = 10)]
    pub per_class: usize,
}

impl Args {
    /// `base` with every option given on the command line applied.
    fn recipe(&self, base: Recipe) -> Recipe {
        let mut r = base;
        let a = &mut r.arch;
        a.patch_size = self.patch_size.unwrap_or(a.patch_size);
        a.hidden = self.hidden.unwrap_or(a.hidden);
        a.layers = self.layers.unwrap_or(a.layers);
        a.heads = self.heads.unwrap_or(a.heads);
        a.mlp_dim = self.mlp_dim.unwrap_or(a.mlp_dim);
        r.epochs = self.epochs.unwrap_or(r.epochs);
        r.batch = self.batch.unwrap_or(r.batch);
        r.lr = self.lr.unwrap_or(r.lr);
        r.weight_decay = self.wd.unwrap_or(r.weight_decay);
        r.warmup_epochs = self.warmup_epochs.unwrap_or(r.warmup_epochs);
        r.seed = self.seed.unwrap_or(r.seed);
        r.limit = self.limit.or(r.limit);
        r
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(dir) = &args.export_samples {
        let test = FashionMnist::load(&args.data, Split::Test)?;
        let written = fashion_mnist::export_samples(&test, &dir.join("samples"), args.per_class)?;
        fashion_mnist::write_class_names(&dir.join("classes.json"))?;
        println!(
            "wrote {} sample images and classes.json into {}",
            written.len(),
            dir.display()
        );
        return Ok(());
    }
    let ckpt = args.out.join("checkpoint");
    let recipe = if args.resume {
        let saved = training::checkpoint_recipe(&ckpt)?;
        let asked = args.recipe(saved.clone());
        anyhow::ensure!(
            asked == saved,
            "--resume: the options given differ from the checkpoint's recipe {saved:?}"
        );
        saved
    } else {
        args.recipe(Recipe::default())
    };
    let mut train = FashionMnist::load(&args.data, Split::Train)?;
    if let Some(n) = recipe.limit {
        train = train.truncate(n);
    }
    let test = FashionMnist::load(&args.data, Split::Test)?;
    eprintln!(
        "training on {} images, {} epochs of {} steps; checkpoints in {}",
        train.len(),
        recipe.epochs,
        recipe.steps_per_epoch(train.len()),
        ckpt.display()
    );
    let opts = TrainOptions {
        resume: args.resume,
        progress: true,
        stop_after: args.stop_after,
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
    let command = reproduce_command(&recipe, &args);
    let model_dir = args.out.join("model");
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
fn reproduce_command(r: &Recipe, args: &Args) -> String {
    let a = &r.arch;
    let mut c = format!(
        "neuronpath train --data {} --out {} --epochs {} --batch {} --lr {} --wd {} \\\n  \
         --warmup-epochs {} --seed {} --patch-size {} --hidden {} --layers {} --heads {} --mlp-dim {}",
        args.data.display(),
        args.out.display(),
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
