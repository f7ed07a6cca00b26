//! The authors' result layout (SPEC section 11), so their notebooks can read our results:
//! `{prefix}.args.json`, and per ground-truth label `{prefix}-{label}.rlt.jsonl`, opened for
//! append, one line per batch: a JSON array with one object per image.
use super::file_error::FileError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// One image in the authors' format (the doubled brackets are theirs).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReferenceEntry {
    /// The path, as the authors' list of paths (one here).
    pub ja: Vec<Vec<usize>>,
    /// Its JAS, doubly nested as theirs.
    pub ja_score: Vec<Vec<f64>>,
    /// The activation baseline's path.
    pub base: Vec<Vec<usize>>,
    /// Its JAS.
    pub base_score: Vec<Vec<f64>>,
}

impl ReferenceEntry {
    /// One image's entry: the path and the activation baseline, each with its JAS.
    pub fn new(path: &[usize], jas: f64, base: &[usize], base_jas: f64) -> Self {
        ReferenceEntry {
            ja: vec![path.to_vec()],
            ja_score: vec![vec![jas]],
            base: vec![base.to_vec()],
            base_score: vec![vec![base_jas]],
        }
    }
}

/// Why the authors' layout cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// A file or folder that cannot be created, written, listed or read.
    #[error(transparent)]
    File(#[from] FileError),
    /// A line that is not a JSON array of entries.
    #[error("{}: not in the authors' layout", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        #[source]
        /// Why the line does not parse.
        source: serde_json::Error,
    },
    #[error("{}: prefix without a file name", .0.display())]
    /// A prefix with no file name to put the layout's files under.
    Prefix(PathBuf),
    /// A refused or failed atomic write.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
}

type Result<T, E = ReferenceError> = std::result::Result<T, E>;

fn file_error(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> ReferenceError {
    let path = path.to_path_buf();
    move |source| FileError::new(&path, action, source).into()
}

/// `{prefix}.args.json`, the file that marks the layout as ours.
pub fn args_file(prefix: &Path) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".args.json");
    PathBuf::from(s)
}

fn label_file(prefix: &Path, label: usize) -> PathBuf {
    PathBuf::from(format!("{}-{label}.rlt.jsonl", prefix.display()))
}

/// Writes `{prefix}.args.json`.
pub fn write_args(prefix: &Path, args: &serde_json::Value) -> Result<()> {
    let p = args_file(prefix);
    crate::output::write_atomic(&p, crate::output::mark_json("args", args).as_bytes())?;
    Ok(())
}

/// Appends one batch line per label present in `entries` (label, entry).
pub fn append_batch(prefix: &Path, entries: &[(usize, ReferenceEntry)]) -> Result<()> {
    let mut by_label: BTreeMap<usize, Vec<&ReferenceEntry>> = BTreeMap::new();
    for (label, e) in entries {
        by_label.entry(*label).or_default().push(e);
    }
    for (label, list) in by_label {
        let p = label_file(prefix, label);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(file_error(&p, "write"))?;
        let mut line = serde_json::to_string(&list).expect("entries serialise");
        line.push('\n');
        f.write_all(line.as_bytes())
            .map_err(file_error(&p, "write"))?;
    }
    Ok(())
}

/// Empties every `{prefix}-{label}.rlt.jsonl` there is (atomically, each to zero entries), for a
/// run whose results file starts with no records.
pub fn clear_labels(prefix: &Path) -> Result<()> {
    for (_, p) in label_files(prefix)? {
        crate::output::write_atomic(&p, b"")?;
    }
    Ok(())
}

/// The `{prefix}-{label}.rlt.jsonl` files there are now, with their labels, in label order.
pub fn label_files(prefix: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let dir = prefix
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = prefix
        .file_name()
        .ok_or_else(|| ReferenceError::Prefix(prefix.to_path_buf()))?
        .to_string_lossy()
        .to_string();
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // No folder yet: no files.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(file_error(dir, "list")(e)),
    };
    for entry in entries {
        let name = entry
            .map_err(file_error(dir, "list"))?
            .file_name()
            .to_string_lossy()
            .to_string();
        let Some(label) = name
            .strip_prefix(&format!("{stem}-"))
            .and_then(|r| r.strip_suffix(".rlt.jsonl"))
            .and_then(|l| l.parse::<usize>().ok())
        else {
            continue;
        };
        out.push((label, dir.join(&name)));
    }
    out.sort();
    Ok(out)
}

/// Reads every `{prefix}-{label}.rlt.jsonl` back: label -> entries in file order.
pub fn read_reference(prefix: &Path) -> Result<BTreeMap<usize, Vec<ReferenceEntry>>> {
    let mut out = BTreeMap::new();
    for (label, p) in label_files(prefix)? {
        let mut list = Vec::new();
        let f = std::fs::File::open(&p).map_err(file_error(&p, "read"))?;
        for line in std::io::BufReader::new(f).lines() {
            let line = line.map_err(file_error(&p, "read"))?;
            let batch: Vec<ReferenceEntry> =
                serde_json::from_str(&line).map_err(|source| ReferenceError::Format {
                    path: p.clone(),
                    source,
                })?;
            list.extend(batch);
        }
        out.insert(label, list);
    }
    Ok(out)
}
