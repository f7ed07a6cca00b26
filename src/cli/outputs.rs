//! Each command's output guard: what it reads (never written onto) and `--force`.
use crate::io::results::Results;
use crate::output::Outputs;
use crate::setup::ModelSpec;
use std::path::Path;

/// Prints what reading the results and reopening the run noticed (repeated records, another
/// dtype), one `warning:` / `note:` line each.
pub fn show(warnings: &[String], notes: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
    for n in notes {
        eprintln!("note: {n}");
    }
}

/// A guard for a command over a results file: the file, the model (given or recorded) and the
/// run's inputs are inputs.
pub fn over_run(force: bool, results: &Path, model: &ModelSpec, run: &Results) -> Outputs {
    let mut g = Outputs::new(force);
    g.input(results);
    g.inputs(&model.path);
    let h = &run.header;
    // Recorded paths that are not here (the embedded model, another machine's) guard nothing.
    let here = |p: &std::path::PathBuf| p.exists();
    g.inputs(h.model.to_path().ok().filter(here));
    if !h.inputs.is_embedded() {
        g.inputs(
            h.inputs
                .to_paths()
                .unwrap_or_default()
                .into_iter()
                .filter(here),
        );
    }
    g.inputs(h.inputs.labels_path().ok().flatten());
    g
}
