//! Reading, appending and merging results files: JSON Lines, a [`Header`] line first, then one
//! complete [`Record`] line per image.
//!
//! Each record is written with a single `write_all` and flushed, so a killed run leaves at most
//! one partial last line (no newline); readers ignore it and reopening for append cuts it off.
//! Any other line that is not a record is an error naming the file and the line.
use super::error::ResultsError;
use super::schema::{Header, Record, SchemaVersion};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

fn io_error(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> ResultsError {
    let path = path.to_path_buf();
    move |source| ResultsError::Io { path, what, source }
}

fn line_error(path: &Path, line: usize, message: impl ToString) -> ResultsError {
    ResultsError::Line {
        path: path.to_path_buf(),
        line,
        message: message.to_string(),
    }
}

/// Parses a header line (`"kind": "header"`), refusing another major schema version.
fn parse_header(path: &Path, text: &str) -> Result<Header, ResultsError> {
    let mut v: Value = serde_json::from_str(text).map_err(|e| line_error(path, 1, e))?;
    let Some(o) = v.as_object_mut().filter(|o| o["kind"] == "header") else {
        return Err(ResultsError::NoHeader(path.to_path_buf()));
    };
    o.remove("kind");
    if let Some(s) = o.get("schema") {
        let found: SchemaVersion = serde_json::from_value(s.clone())
            .map_err(|e| line_error(path, 1, format!("`schema`: {e}")))?;
        if found.major != SchemaVersion::CURRENT.major {
            return Err(ResultsError::Schema {
                path: path.to_path_buf(),
                found,
            });
        }
    }
    let header: Header =
        serde_json::from_value(v).map_err(|e| line_error(path, 1, format!("header: {e}")))?;
    header.check_fits().map_err(|e| line_error(path, 1, e))?;
    Ok(header)
}

/// Reads a results file: its header and every image record, in file order. A partial last line
/// (a killed writer's) is ignored; anything else unreadable is an error.
pub fn read_results(path: &Path) -> Result<(Header, Vec<Record>), ResultsError> {
    read_with_tail(path).map(|(h, r, _)| (h, r))
}

/// [`read_results`], and whether the last record came from a line without its newline (which
/// reopening for append cuts off, so it does not count as done).
fn read_with_tail(path: &Path) -> Result<(Header, Vec<Record>, bool), ResultsError> {
    let file = File::open(path).map_err(io_error(path, "cannot open"))?;
    let mut reader = BufReader::new(file);
    let mut header = None;
    let mut records = Vec::new();
    let mut text = String::new();
    let mut unterminated_record = false;
    for n in 1.. {
        text.clear();
        let read = reader
            .read_line(&mut text)
            .map_err(io_error(path, "unreadable"))?;
        if read == 0 {
            break;
        }
        let complete = text.ends_with('\n');
        if text.trim().is_empty() {
            continue;
        }
        let parsed = match &header {
            None => parse_header(path, &text).map(|h| header = Some(h)),
            Some(h) => serde_json::from_str::<Record>(&text)
                .map_err(|e| line_error(path, n, e))
                .and_then(|r| {
                    r.check_fits(h).map_err(|e| line_error(path, n, e))?;
                    records.push(r);
                    Ok(())
                }),
        };
        match parsed {
            Ok(()) => unterminated_record = !complete && n > 1,
            Err(_) if !complete && n > 1 => break,
            Err(e) => return Err(e),
        }
    }
    let header = header.ok_or_else(|| ResultsError::NoHeader(path.to_path_buf()))?;
    Ok((header, records, unterminated_record))
}

/// Appends image records to a results file, one complete line at a time.
pub struct RecordWriter {
    file: File,
    path: PathBuf,
}

impl RecordWriter {
    /// Creates `path` with `header`, or reopens it for the same run: returns the indices
    /// already done. Another configuration is an error, never a silent mix.
    pub fn open(path: &Path, header: &Header) -> Result<(Self, BTreeSet<u64>), ResultsError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(io_error(dir, "cannot create the output folder"))?;
        }
        let exists = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        if exists {
            let (old, mut records, unterminated) = read_with_tail(path)?;
            if unterminated {
                records.pop();
            }
            if !old.same_run(header) {
                return Err(ResultsError::OtherRun {
                    path: path.to_path_buf(),
                    difference: old.first_difference(header),
                });
            }
            truncate_partial_line(path).map_err(io_error(path, "cannot write"))?;
            let file = OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(io_error(path, "cannot write"))?;
            let done = records.iter().map(|r| r.index).collect();
            let w = RecordWriter {
                file,
                path: path.to_path_buf(),
            };
            return Ok((w, done));
        }
        let file = File::create(path).map_err(io_error(path, "cannot write"))?;
        let mut w = RecordWriter {
            file,
            path: path.to_path_buf(),
        };
        let mut v = serde_json::to_value(header).map_err(|e| line_error(path, 1, e))?;
        v["kind"] = "header".into();
        w.write_line(&v)?;
        Ok((w, BTreeSet::new()))
    }

    fn write_line(&mut self, v: &impl serde::Serialize) -> Result<(), ResultsError> {
        let mut line = serde_json::to_string(v).map_err(|e| line_error(&self.path, 0, e))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(io_error(&self.path, "cannot write"))
    }

    /// Appends one record.
    pub fn append(&mut self, record: &Record) -> Result<(), ResultsError> {
        self.write_line(record)
    }
}

/// Cuts the file after its last newline (a killed writer may leave half a line).
fn truncate_partial_line(path: &Path) -> std::io::Result<()> {
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

/// Joins shard outputs into one file (records sorted by index, the first of duplicates kept);
/// refuses inputs of different runs. Returns the number of records written.
pub fn merge(inputs: &[&Path], output: &Path) -> Result<usize, ResultsError> {
    let mut header: Option<Header> = None;
    let mut all: BTreeMap<u64, Record> = BTreeMap::new();
    for p in inputs {
        let (h, recs) = read_results(p)?;
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
        for r in recs {
            all.entry(r.index).or_insert(r);
        }
    }
    let mut header = header.ok_or(ResultsError::NothingToMerge)?;
    header.shard = None;
    if output.exists() {
        std::fs::remove_file(output).map_err(io_error(output, "cannot replace"))?;
    }
    let (mut w, _) = RecordWriter::open(output, &header)?;
    for r in all.values() {
        w.append(r)?;
    }
    Ok(all.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::results::{Method, Outcome};

    /// Three lines written by neuronpath before the `schema` field existed.
    const BEFORE_SCHEMA: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/results/before_schema.jsonl"
    ));

    fn lines() -> Vec<&'static str> {
        BEFORE_SCHEMA.lines().collect()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn files_without_a_schema_read_as_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "old.jsonl", BEFORE_SCHEMA);
        let (h, r) = read_results(&p).unwrap();
        assert_eq!(h.schema, SchemaVersion::CURRENT);
        assert_eq!(h.model.config.layers, 6);
        assert_eq!(h.methods[0], Method::Path);
        assert!(h.extra.is_empty(), "every field is known: {:?}", h.extra);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|r| r.extra.is_empty() && r.result().is_some()));
        // Written back, each line holds the same JSON (plus the schema version).
        let back: Value = serde_json::to_value(&r[0]).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(lines()[1]).unwrap());
    }

    #[test]
    fn another_major_version_is_refused_naming_file_and_versions() {
        let dir = tempfile::tempdir().unwrap();
        let mut h: Value = serde_json::from_str(lines()[0]).unwrap();
        h["schema"] = "2.1".into();
        h["steps"] = "changed meaning".into();
        let p = write(dir.path(), "new.jsonl", &format!("{h}\n"));
        let e = read_results(&p).unwrap_err().to_string();
        assert!(
            e.contains("new.jsonl") && e.contains("2.1") && e.contains("1.x"),
            "{e}"
        );
        // A newer minor is read, its new fields kept.
        h["schema"] = "1.7".into();
        h["steps"] = 4.into();
        h["future"] = serde_json::json!({"a": 1});
        let p = write(dir.path(), "minor.jsonl", &format!("{h}\n"));
        let (got, _) = read_results(&p).unwrap();
        assert_eq!(got.extra["future"], serde_json::json!({"a": 1}));
    }

    #[test]
    fn only_a_torn_last_line_is_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let l = lines();
        let torn = format!("{}\n{}\n{}", l[0], l[1], &l[2][..40]);
        let (_, r) = read_results(&write(dir.path(), "torn.jsonl", &torn)).unwrap();
        assert_eq!(r.len(), 1);
        let bad = format!("{}\n{}\n{}\n", l[0], &l[1][..40], l[2]);
        let e = read_results(&write(dir.path(), "bad.jsonl", &bad))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.jsonl: line 2"), "{e}");
        let e = read_results(&write(dir.path(), "nohdr.jsonl", &format!("{}\n", l[1])))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no header"), "{e}");
    }

    #[test]
    fn reopening_cuts_a_partial_line_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let l = lines();
        // The last record is complete JSON but lost its newline: it is cut and redone.
        let p = write(
            dir.path(),
            "r.jsonl",
            &format!("{}\n{}\n{}", l[0], l[1], l[2]),
        );
        let (h, recs) = read_results(&p).unwrap();
        assert_eq!(recs.len(), 2);
        let (mut w, done) = RecordWriter::open(&p, &h).unwrap();
        assert_eq!(done.into_iter().collect::<Vec<_>>(), vec![recs[0].index]);
        w.append(&recs[1]).unwrap();
        drop(w);
        let (h2, again) = read_results(&p).unwrap();
        assert_eq!((h2, again), (h.clone(), recs.clone()));
        // Another configuration is refused, naming the field.
        let mut other = h.clone();
        other.seed = 5;
        let e = RecordWriter::open(&p, &other).err().unwrap().to_string();
        assert!(e.contains("`seed` (0 vs 5)"), "{e}");
    }

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
        assert_eq!(merge(&[&a, &b], &out).unwrap(), 2);
        let (h, r) = read_results(&out).unwrap();
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
}
