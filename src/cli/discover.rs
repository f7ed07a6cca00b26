//! `neuronpath discover`: neuron paths for every input image, written as JSON Lines (resumable,
//! shardable), optionally also in the authors' layout, then the report.
use super::plans::DiscoverPlan;
use crate::attribution::run::{discover_all, Summary};
use crate::experiments::full_report::{build_report, ReportOptions};
use crate::experiments::render::report::{json_path, maps_path};
use crate::io::reference;
use crate::io::results::os_path;
use crate::model::Objective;
use crate::output::{Kind, Outputs};
use anyhow::Result;

/// Refuses outputs that are inputs, that this run writes twice (a report over its own results),
/// or that are other files (unless `--force`), before anything is computed.
fn check_outputs(plan: &DiscoverPlan) -> Result<()> {
    let job = &plan.job;
    let mut guard = Outputs::new(plan.force);
    guard
        .inputs(&job.model.path)
        .inputs(&job.inputs)
        .inputs(&job.labels);
    if let Objective::Direction {
        source, source_hex, ..
    } = &job.objective
    {
        let exact = match source_hex {
            Some(h) => os_path::from_hex(h).map_err(anyhow::Error::msg)?,
            None => source.into(),
        };
        guard.input(&exact);
    }
    guard.check(&job.out, Kind::Results)?;
    if let Some(report) = &plan.report {
        guard.check(report, Kind::Report)?;
        let json = json_path(report);
        guard.check(&json, Kind::Json)?;
        guard.check(&maps_path(report), Kind::Beside(json))?;
    }
    if let Some(prefix) = &job.reference_layout {
        // The per-label files are appended to: existing ones must be an earlier run's, which
        // wrote the (marked) args file beside them.
        let args = reference::args_file(prefix);
        let earlier = reference::label_files(prefix)?;
        guard.check(&args, Kind::Json)?;
        for (_, p) in earlier {
            guard.check(&p, Kind::Beside(args.clone()))?;
        }
    }
    Ok(())
}

pub fn run(plan: &DiscoverPlan) -> Result<()> {
    check_outputs(plan)?;
    let summary = discover_all(&plan.job, &mut |n| eprintln!("note: {n}"))?;
    if summary.stopped {
        return Ok(());
    }
    if summary.images + summary.errors == 0 && summary.done_before > 0 {
        // Nothing left to do: say so and show what the file holds, not an empty run's zeros.
        println!(
            "all {} images already done in {}; stored summary:",
            summary.done_before,
            plan.job.out.display()
        );
        let mut stored = Summary::stored(&plan.job.out)?;
        stored.seconds = f64::NAN;
        stored.print(&plan.job.out);
    } else {
        summary.print(&plan.job.out);
    }
    let Some(path) = &plan.report else {
        if plan.job.shard.is_none() {
            println!(
                "for the HTML report: neuronpath report --results {} --out {}",
                plan.job.out.display(),
                plan.job.out.with_file_name("report.html").display()
            );
        }
        return Ok(());
    };
    if plan.job.shard.is_some() {
        eprintln!("(no report for a shard: merge the shards, then run `neuronpath report`)");
        return Ok(());
    }
    let options = ReportOptions {
        map_steps: plan.map_steps,
        ..ReportOptions::default()
    };
    let claims = build_report(&plan.job.out, &plan.job.model, &options, path, &mut |n| {
        eprintln!("note: {n}")
    })?;
    println!(
        "report: {} ({} claims checked)",
        path.display(),
        claims.len()
    );
    Ok(())
}
