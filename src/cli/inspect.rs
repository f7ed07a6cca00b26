//! `neuronpath inspect`: the configuration detected from a checkpoint.
use super::plans::InspectPlan;

pub fn run(plan: &InspectPlan) -> anyhow::Result<()> {
    let loaded = plan.model.load(false)?;
    let name = plan.model.name();
    if plan.json {
        let v = loaded.summary_json(&name);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", loaded.summary_text(&name));
    }
    Ok(())
}
