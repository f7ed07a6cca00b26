//! Self-describing JSON Lines result files: one header line (`"kind": "header"`) describing the
//! run, then one complete line per image (`"kind": "image"`, keyed by `"index"`).
//!
//! Each record is written with a single `write_all` and flushed, so a killed run leaves at most
//! one partial last line; reopening drops it and reports which images are done (resume).
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// Header fields that may differ between runs of the same configuration.
const VOLATILE: &[&str] = &["kind", "shard", "created", "tool_version"];

/// The part of a header that must match for results to be combined.
fn run_config(header: &Value) -> Value {
    let mut v = header.clone();
    if let Some(o) = v.as_object_mut() {
        for k in VOLATILE {
            o.remove(*k);
        }
    }
    v
}

/// First differing top-level key of two configurations, for error messages.
fn first_difference(a: &Value, b: &Value) -> String {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return "header".into();
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .find(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("`{k}` ({} vs {})", short(a.get(k)), short(b.get(k))))
        .unwrap_or_else(|| "header".into())
}

fn short(v: Option<&Value>) -> String {
    let s = v.map(|v| v.to_string()).unwrap_or_else(|| "absent".into());
    if s.len() > 80 {
        format!("{}...", &s[..80])
    } else {
        s
    }
}

/// Reads a results file: header and complete image records (a partial last line is ignored).
pub fn read_records(path: &Path) -> Result<(Value, Vec<Value>)> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut header = None;
    let mut records = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}: unreadable", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            // Only a torn final line (killed writer) is tolerated.
            Err(_) => continue,
        };
        match v["kind"].as_str() {
            Some("header") if n == 0 => header = Some(v),
            Some("image") => records.push(v),
            _ => bail!(
                "{}: line {} is neither a header nor an image record",
                path.display(),
                n + 1
            ),
        }
    }
    let header = header.with_context(|| format!("{}: no header line", path.display()))?;
    Ok((header, records))
}

/// Appends image records to a results file, one complete line at a time.
pub struct RecordWriter {
    file: File,
}

impl RecordWriter {
    /// Creates `path` with `header`, or reopens it for the same configuration: returns the
    /// indices already done. A different configuration is an error, never a silent mix.
    pub fn open(path: &Path, header: &Value) -> Result<(Self, BTreeSet<u64>)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create the output folder", dir.display()))?;
        }
        let mut done = BTreeSet::new();
        if path.exists() && std::fs::metadata(path)?.len() > 0 {
            let (old, records) = read_records(path)?;
            if run_config(&old) != run_config(header) {
                bail!(
                    "{}: holds results of another configuration (differs in {}); use another output file",
                    path.display(),
                    first_difference(&run_config(&old), &run_config(header))
                );
            }
            done = records.iter().filter_map(|r| r["index"].as_u64()).collect();
            truncate_partial_line(path)?;
            let file = OpenOptions::new()
                .append(true)
                .open(path)
                .with_context(|| format!("{}: cannot write", path.display()))?;
            return Ok((RecordWriter { file }, done));
        }
        let file =
            File::create(path).with_context(|| format!("{}: cannot write", path.display()))?;
        let mut w = RecordWriter { file };
        w.write_line(header)?;
        Ok((w, done))
    }

    fn write_line(&mut self, v: &Value) -> Result<()> {
        let mut line = serde_json::to_string(v)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.flush()?;
        Ok(())
    }

    /// Appends one record (must carry `"kind": "image"` and an `"index"`).
    pub fn append(&mut self, record: &Value) -> Result<()> {
        self.write_line(record)
    }
}

/// Cuts the file after its last newline (a killed writer may leave half a line).
fn truncate_partial_line(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path)?;
    let keep = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(0);
    if keep < bytes.len() {
        OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(keep as u64)?;
    }
    Ok(())
}

/// Joins shard outputs into one file (records sorted by index, duplicates dropped); refuses
/// inputs of different configurations. Returns the number of records written.
pub fn merge(inputs: &[&Path], output: &Path) -> Result<usize> {
    let mut header: Option<Value> = None;
    let mut all: BTreeMap<u64, Value> = BTreeMap::new();
    for p in inputs {
        let (h, recs) = read_records(p)?;
        match &header {
            None => header = Some(h),
            Some(first) if run_config(first) != run_config(&h) => bail!(
                "{}: another configuration than {} (differs in {}); refusing to merge",
                p.display(),
                inputs[0].display(),
                first_difference(&run_config(first), &run_config(&h))
            ),
            _ => {}
        }
        for r in recs {
            let idx = r["index"]
                .as_u64()
                .with_context(|| format!("{}: record without index", p.display()))?;
            all.entry(idx).or_insert(r);
        }
    }
    let mut header = header.context("nothing to merge")?;
    header["shard"] = Value::Null;
    if output.exists() {
        std::fs::remove_file(output)
            .with_context(|| format!("{}: cannot replace", output.display()))?;
    }
    let (mut w, _) = RecordWriter::open(output, &header)?;
    for r in all.values() {
        w.append(r)?;
    }
    Ok(all.len())
}
