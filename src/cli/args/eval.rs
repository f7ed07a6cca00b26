//! `neuronpath eval`: a model's Fashion-MNIST test accuracy.
use crate::io::fashion_mnist;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Checkpoint (e.g. assets/fashion-mnist/model).
    #[arg(long)]
    pub model: PathBuf,
    /// Folder with the Fashion-MNIST IDX .gz files.
    #[arg(long, default_value = fashion_mnist::DEFAULT_DIR)]
    pub data: PathBuf,
    /// Images per forward pass [range: at least 1].
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}
