//! `neuronpath merge`: joins the outputs of shards into one results file.
use super::plans::MergePlan;

pub fn run(plan: &MergePlan) -> anyhow::Result<()> {
    let inputs: Vec<&std::path::Path> = plan.inputs.iter().map(|p| p.as_path()).collect();
    let n = crate::io::results::merge(&inputs, &plan.out)?;
    eprintln!(
        "merged {} files: {n} images -> {}",
        inputs.len(),
        plan.out.display()
    );
    Ok(())
}
