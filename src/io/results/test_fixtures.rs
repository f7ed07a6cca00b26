//! What the results module's unit tests share: a results file written before the `schema` field
//! existed, and a helper that writes a test file.
use std::path::{Path, PathBuf};

/// Three lines written by neuronpath before the `schema` field existed.
pub(super) const BEFORE_SCHEMA: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/results/before_schema.jsonl"
));

/// The lines of [`BEFORE_SCHEMA`]: the header, then two records.
pub(super) fn lines() -> Vec<&'static str> {
    BEFORE_SCHEMA.lines().collect()
}

/// Writes `text` to `dir/name` and returns the path.
pub(super) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
