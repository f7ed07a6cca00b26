//! `neuronpath merge`: joins the outputs of shards into one results file.
use super::plans::MergePlan;
use crate::io::results::merge;
use crate::output::{Kind, Outputs};

pub fn run(plan: &MergePlan) -> anyhow::Result<()> {
    let mut guard = Outputs::new(plan.force);
    guard.inputs(&plan.inputs);
    guard.check(&plan.out, Kind::Results)?;
    let inputs: Vec<&std::path::Path> = plan.inputs.iter().map(|p| p.as_path()).collect();
    let m = merge(&inputs, &plan.out)?;
    for w in &m.warnings {
        eprintln!("warning: {w}");
    }
    if m.duplicates > 0 {
        eprintln!(
            "note: {} image(s) had records in more than one input; the last input's record is kept",
            m.duplicates
        );
    }
    println!(
        "merged {} files: {} images -> {}",
        inputs.len(),
        m.records,
        plan.out.display()
    );
    Ok(())
}
