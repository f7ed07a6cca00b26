//! The `README.md` model card written next to a trained model.
use super::{Evaluation, Recipe, Trained};
use crate::io::fashion_mnist::CLASS_NAMES;
use std::fmt::Write;

/// Markdown model card: data, licence, architecture, recipe, measured accuracy, how to reproduce.
pub fn model_card(recipe: &Recipe, trained: &Trained, test: &Evaluation, command: &str) -> String {
    let a = &recipe.arch;
    let cfg = a.config();
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# neuronpath Fashion-MNIST ViT\n");
    let _ = writeln!(
        w,
        "A small Vision Transformer trained from scratch by neuronpath's own training code \
         (`neuronpath train`, the same forward pass that runs every checkpoint). It is the model \
         the neuronpath commands use out of the box.\n"
    );
    let _ = writeln!(w, "## Data\n");
    let _ = writeln!(
        w,
        "[Fashion-MNIST](https://github.com/zalandoresearch/fashion-mnist) (Zalando Research, \
         MIT licence): 60,000 training and 10,000 test grayscale 28x28 images of 10 clothing \
         classes, read from the original IDX files (Debian package `dataset-fashion-mnist`).{}\n",
        match recipe.limit {
            Some(n) => format!(" Only the first {n} training images were used."),
            None => String::new(),
        }
    );
    let _ = writeln!(
        w,
        "Input: the gray image replicated to 3 channels (a standard RGB ViT, so the normal image \
         pipeline applies to PNGs), scaled to [0, 1] and normalised with mean 0.5 and std 0.5 per \
         channel (`preprocessor_config.json`).\n"
    );
    let _ = writeln!(w, "## Architecture\n");
    let _ = writeln!(
        w,
        "Hugging Face `ViTForImageClassification` layout. Image {0}x{0}, patch {1}x{1} ({2} \
         patches + CLS token), hidden size {3}, {4} pre-LN encoder blocks of {5} heads, MLP {6} \
         with exact (erf) GELU, LayerNorm eps {7:e}, classifier on the final CLS token. \
         {8} parameters, stored as f32.\n",
        cfg.image_size,
        a.patch_size,
        cfg.patches(),
        a.hidden,
        a.layers,
        a.heads,
        a.mlp_dim,
        cfg.ln_eps,
        trained.params.count()
    );
    let _ = writeln!(w, "## Training recipe\n");
    let _ = writeln!(w, "| | |\n|---|---|");
    let rows = [
        ("epochs", recipe.epochs.to_string()),
        ("batch size", recipe.batch.to_string()),
        ("optimizer", "AdamW (beta 0.9, 0.999, eps 1e-8)".to_string()),
        ("peak learning rate", format!("{:e}", recipe.lr)),
        (
            "schedule",
            format!(
                "linear warm-up for {} epoch(s), cosine decay to {:e}, set every step",
                recipe.warmup_epochs, recipe.min_lr
            ),
        ),
        (
            "weight decay",
            format!("{} (weight matrices only)", recipe.weight_decay),
        ),
        ("loss", "cross-entropy".to_string()),
        (
            "augmentation",
            format!(
                "random translation by up to {} px per axis (zero padding){}",
                recipe.augment.max_shift,
                if recipe.augment.flip {
                    ", random horizontal flip"
                } else {
                    ""
                }
            ),
        ),
        (
            "initialisation",
            "timm: trunc-normal(0.02) weights and position embedding, zero biases, LayerNorm 1/0"
                .to_string(),
        ),
        (
            "seed",
            format!(
                "{} (ChaCha8; all shuffling, augmentation and initialisation)",
                recipe.seed
            ),
        ),
        (
            "training time",
            format!(
                "{:.1} min on CPU ({:.0} s per epoch)",
                trained.seconds() / 60.0,
                trained.seconds() / trained.history.len().max(1) as f64
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(w, "| {k} | {v} |");
    }
    let _ = writeln!(w, "\n## Results\n");
    let _ = writeln!(
        w,
        "Test accuracy on the full Fashion-MNIST test split ({} images): **{:.2}%**.\n",
        test.total.iter().sum::<usize>(),
        100.0 * test.accuracy()
    );
    let _ = writeln!(w, "| class | accuracy |\n|---|---|");
    for (c, name) in CLASS_NAMES.iter().enumerate() {
        let _ = writeln!(w, "| {c} {name} | {:.1}% |", 100.0 * test.class_accuracy(c));
    }
    let _ = writeln!(w, "\nPer epoch (training images, augmented):\n");
    let _ = writeln!(
        w,
        "| epoch | loss | accuracy | seconds |\n|---|---|---|---|"
    );
    for h in &trained.history {
        let _ = writeln!(
            w,
            "| {} | {:.4} | {:.2}% | {:.0} |",
            h.epoch,
            h.loss,
            100.0 * h.accuracy,
            h.seconds
        );
    }
    let _ = writeln!(w, "\n## Reproduce\n");
    let _ = writeln!(w, "```sh\n{command}\n```\n");
    let _ = writeln!(
        w,
        "Check the shipped files as users load them: \
         `neuronpath eval --model assets/fashion-mnist/model`."
    );
    s
}
