//! Joining shard outputs into one results file.
use super::error::ResultsError;
use super::file::{io_error, last_per_image, read_results_noting};
use super::schema::{Header, Record};
use crate::io::shard::Shard;
use crate::output::AtomicFile;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

/// What [`merge`] wrote, and what the inputs are missing.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    /// Records written (one per image).
    pub records: usize,
    /// Records of images (by identity) that more than one input held (the last input's record
    /// is kept).
    pub duplicates: usize,
    /// Images of the run (the header's count) with no record in any input.
    pub missing: usize,
    /// Slices `i/n` of a sharded run that no input holds.
    pub missing_shards: Vec<Shard>,
    /// Readable notes for the user: missing shards and images, mixed shard counts.
    pub warnings: Vec<String>,
}

/// Joins shard outputs (or any results files of one run) into `output`: records sorted by
/// index, one per image identity (the record of the last input holding it wins, as a later line wins
/// within a file), written atomically. Inputs of different configurations are refused; the
/// shards and images the inputs lack are reported. The caller checks `output` against the
/// inputs ([`crate::output::Outputs`]).
pub fn merge(inputs: &[&Path], output: &Path) -> Result<Merged, ResultsError> {
    let mut header: Option<Header> = None;
    let mut all: Vec<Record> = Vec::new();
    let mut shards: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut whole = false;
    let mut warnings = Vec::new();
    for p in inputs {
        let read = read_results_noting(p)?;
        warnings.extend(read.warnings);
        let (h, recs) = (read.header, read.records);
        match &h.shard {
            Some(s) => {
                shards.entry(s.count).or_default().insert(s.index);
            }
            None => whole = true,
        }
        match &header {
            None => header = Some(h),
            Some(first) if !first.same_run(&h) => {
                return Err(ResultsError::Mismatch {
                    path: p.to_path_buf(),
                    first: inputs[0].to_path_buf(),
                    difference: first.first_difference(&h),
                })
            }
            _ => {}
        }
        all.extend(recs);
    }
    let mut header = header.ok_or(ResultsError::NothingToMerge)?;
    header.shard = None;
    let (mut records, duplicates) = last_per_image(all);
    records.sort_by_key(|r| r.index);
    if duplicates > 0 {
        warnings.push(format!(
            "{duplicates} record(s) repeat an image (same path and content) of another input: counted once"
        ));
    }
    let clashes = records
        .windows(2)
        .filter(|w| w[0].index == w[1].index)
        .count();
    if clashes > 0 {
        warnings.push(format!(
            "{clashes} record(s) share an index with another image's (inputs listed differently between shards)"
        ));
    }
    let mut missing_shards = Vec::new();
    if shards.len() > 1 {
        let counts: Vec<String> = shards.keys().map(|n| format!("/{n}")).collect();
        warnings.push(format!(
            "the inputs split the run in different ways ({})",
            counts.join(", ")
        ));
    }
    if !whole && shards.len() == 1 {
        let (&count, present) = shards.iter().next().expect("one shard count");
        missing_shards = (0..count)
            .filter(|i| !present.contains(i))
            .map(|index| Shard { index, count })
            .collect();
        if !missing_shards.is_empty() {
            let names: Vec<String> = missing_shards.iter().map(|s| s.to_string()).collect();
            warnings.push(format!(
                "shard(s) {} of the run are not among the inputs",
                names.join(", ")
            ));
        }
    }
    let expected = header.inputs.count;
    let missing = expected.saturating_sub(records.len());
    if missing > 0 {
        warnings.push(format!(
            "{missing} of the run's {expected} images have no record (unfinished or absent shards)"
        ));
    }
    // A results file a run is appending to is not replaced under it.
    let _held = match std::fs::File::open(output) {
        Ok(f) => {
            super::file::lock(&f, output)?;
            Some(f)
        }
        Err(_) => None,
    };
    let mut out = AtomicFile::create(output)?;
    let mut text = {
        let mut v = serde_json::to_value(&header).map_err(|e| line_err(output, e))?;
        v["kind"] = "header".into();
        v.to_string() + "\n"
    };
    for r in &records {
        text += &serde_json::to_string(r).map_err(|e| line_err(output, e))?;
        text.push('\n');
    }
    out.write_all(text.as_bytes())
        .map_err(io_error(output, "cannot write"))?;
    out.commit()?;
    Ok(Merged {
        records: records.len(),
        duplicates,
        missing,
        missing_shards,
        warnings,
    })
}

fn line_err(path: &Path, e: serde_json::Error) -> ResultsError {
    ResultsError::Line {
        path: path.to_path_buf(),
        line: 0,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::results::test_fixtures::{lines, write};
    use crate::io::results::Outcome;
    use serde_json::Value;

    #[test]
    fn merge_sorts_dedups_and_keeps_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let l = lines();
        let mut rec: Value = serde_json::from_str(l[1]).unwrap();
        rec["future"] = "kept".into();
        let a = write(dir.path(), "a.jsonl", &format!("{}\n{}\n", l[0], l[2]));
        let b = write(
            dir.path(),
            "b.jsonl",
            &format!("{}\n{rec}\n{}\n", l[0], l[2]),
        );
        let out = dir.path().join("m.jsonl");
        let m = merge(&[&a, &b], &out).unwrap();
        assert_eq!((m.records, m.duplicates), (2, 1));
        let (h, r) = super::super::read_results(&out).unwrap();
        assert_eq!(h.shard, None);
        assert!(r[0].index < r[1].index);
        assert_eq!(r[0].extra["future"], "kept");
        assert!(matches!(r[1].outcome, Outcome::Done { .. }));
        let mut other: Value = serde_json::from_str(l[0]).unwrap();
        other["steps"] = 9.into();
        let c = write(dir.path(), "c.jsonl", &format!("{other}\n"));
        let e = merge(&[&a, &c], &out).unwrap_err().to_string();
        assert!(
            e.contains("c.jsonl") && e.contains("`steps` (4 vs 9)"),
            "{e}"
        );
    }
    #[test]
    fn missing_shards_and_images_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let l = lines();
        let shard = |s: &str| {
            let mut h: Value = serde_json::from_str(l[0]).unwrap();
            h["shard"] = s.into();
            h
        };
        // Shards 0/3 and 2/3 of a 10-image run, one record each.
        let a = write(
            dir.path(),
            "a.jsonl",
            &format!("{}\n{}\n", shard("0/3"), l[1]),
        );
        let c = write(
            dir.path(),
            "c.jsonl",
            &format!("{}\n{}\n", shard("2/3"), l[2]),
        );
        let out = dir.path().join("m.jsonl");
        let m = merge(&[&a, &c], &out).unwrap();
        assert_eq!(m.records, 2);
        assert_eq!(m.missing, 8);
        assert_eq!(m.missing_shards, vec![Shard { index: 1, count: 3 }]);
        assert!(
            m.warnings.iter().any(|w| w.contains("1/3")),
            "{:?}",
            m.warnings
        );
        // All shards present but unfinished: images missing, no shard.
        let b = write(dir.path(), "b.jsonl", &format!("{}\n", shard("1/3")));
        let m = merge(&[&a, &b, &c], &out).unwrap();
        assert!(m.missing_shards.is_empty());
        assert_eq!(m.missing, 8);
        // The merged file has no shard and holds the records.
        let (h, r) = super::super::read_results(&out).unwrap();
        assert_eq!((h.shard, r.len()), (None, 2));
    }
}
