//! `report`'s flags resolved.
use super::{model_spec, steps};
use crate::cli::args::ReportArgs;
use crate::experiments::full_report::ReportOptions;
use crate::setup::ModelSpec;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// `neuronpath report`, resolved.
#[derive(Clone, Debug)]
pub struct ReportPlan {
    pub results: PathBuf,
    pub model: ModelSpec,
    pub out: PathBuf,
    pub options: ReportOptions,
    /// `--force`: replace existing files of other kinds (never inputs).
    pub force: bool,
}

impl ReportPlan {
    /// Checks `report`'s flags.
    pub fn resolve(a: ReportArgs) -> Result<Self> {
        let defaults = ReportOptions::default();
        let look_alike = match &a.look_alike {
            Some(s) => parse_groups(s)?,
            None => Vec::new(),
        };
        Ok(ReportPlan {
            results: a.results,
            model: model_spec(&a.model)?,
            out: a.out,
            options: ReportOptions {
                ablate: a.ablate,
                prune: a.prune,
                use_model: !a.no_model,
                compute_pruning: !a.no_prune,
                look_alike,
                max_images: a.max_images.unwrap_or(defaults.max_images),
                map_steps: steps("--map-steps", a.map_steps)?,
                ..defaults
            },
            force: a.force,
        })
    }
}

/// `"0,2,4;5,7"`: groups of two or more class indices.
fn parse_groups(s: &str) -> Result<Vec<Vec<usize>>> {
    s.split(';')
        .map(|g| {
            let v = g
                .split(',')
                .map(|c| c.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>();
            match v {
                Ok(v) if v.len() >= 2 => Ok(v),
                _ => bail!("--look-alike: `{g}` is not a group of two or more class indices"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_groups;

    #[test]
    fn look_alike_groups() {
        assert_eq!(
            parse_groups("0, 2,4;5,7").unwrap(),
            vec![vec![0, 2, 4], vec![5, 7]]
        );
        for bad in ["", "1", "1,x", "1,2;3", "1,,2"] {
            let e = parse_groups(bad).unwrap_err().to_string();
            assert!(e.starts_with("--look-alike"), "{e}");
        }
    }
}
