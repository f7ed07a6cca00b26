//! `neuronpath merge`: joins the outputs of shards into one results file.
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Shard outputs (JSON Lines of `discover`).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Merged results file.
    #[arg(long, short)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let inputs: Vec<&std::path::Path> = args.inputs.iter().map(|p| p.as_path()).collect();
    let n = crate::io::results::merge(&inputs, &args.out)?;
    eprintln!(
        "merged {} files: {n} images -> {}",
        inputs.len(),
        args.out.display()
    );
    Ok(())
}
