//! Reading and appending results files: JSON Lines, a [`Header`] line first, then one complete
//! [`Record`] line per image.
//!
//! Each record is written with a single `write_all` and flushed, so a killed run leaves at most
//! one partial last line (no newline); readers ignore it and reopening for append cuts it off.
//! Any other line that is not a record is an error naming the file and the line. A run holds an
//! advisory lock (`flock`) on the file while it appends, so a second run on the same file stops
//! with an error instead of interleaving lines.
use super::error::ResultsError;
use super::schema::{Header, Outcome, Record, RecordKey, SchemaVersion};
use crate::output::{AtomicFile, OutputError};
use serde_json::Value;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

pub(super) fn io_error(
    path: &Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> ResultsError {
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
    let Some(o) = v
        .as_object_mut()
        .filter(|o| o.get("kind").is_some_and(|k| k == "header"))
    else {
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

/// What one pass over a results file found.
struct Scan {
    header: Header,
    /// Every record line, in file order (duplicates included).
    records: Vec<Record>,
    /// Bytes up to the end of the last complete line (what reopening keeps).
    complete_len: u64,
    /// The last record came from a line without its newline (cut on reopening, so not done).
    unterminated_record: bool,
}

impl Scan {
    /// The records with one per image, the last of each kept (a later line is a later attempt),
    /// and how many earlier ones were dropped; `for_append`: without a last record that lost
    /// its newline (reopening cuts it, so it is not done).
    fn unique(mut self, for_append: bool) -> (Header, Vec<Record>, usize) {
        if for_append && self.unterminated_record {
            self.records.pop();
        }
        let (records, dropped) = last_per_image(self.records);
        (self.header, records, dropped)
    }
}

/// One record per image identity ([`Record::key`]: path, row and content hash; the index for
/// records written before identities), the last one of each, in the order of their first lines.
pub(super) fn last_per_image(records: Vec<Record>) -> (Vec<Record>, usize) {
    let mut slot: HashMap<RecordKey, usize> = HashMap::new();
    let mut out: Vec<Record> = Vec::with_capacity(records.len());
    let mut dropped = 0;
    for r in records {
        match slot.get(&r.key()) {
            Some(&i) => {
                out[i] = r;
                dropped += 1;
            }
            None => {
                slot.insert(r.key(), out.len());
                out.push(r);
            }
        }
    }
    (out, dropped)
}

/// Reads a results file from its start.
fn scan(reader: impl Read, path: &Path) -> Result<Scan, ResultsError> {
    let mut reader = BufReader::new(reader);
    let mut header = None;
    let mut records = Vec::new();
    let mut text = String::new();
    let mut unterminated_record = false;
    let mut complete_len = 0u64;
    for n in 1.. {
        text.clear();
        let read = reader
            .read_line(&mut text)
            .map_err(io_error(path, "unreadable"))?;
        if read == 0 {
            break;
        }
        let complete = text.ends_with('\n');
        if complete {
            complete_len += read as u64;
        }
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
            // Only the final line may be torn (a killed writer's); it is not a record.
            Err(_) if !complete && n > 1 => break,
            Err(e) => return Err(e),
        }
    }
    let header = header.ok_or_else(|| ResultsError::NoHeader(path.to_path_buf()))?;
    Ok(Scan {
        header,
        records,
        complete_len,
        unterminated_record,
    })
}

/// A results file as read: the header, one record per image, and what the reader noticed.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadResults {
    /// The header line.
    pub header: Header,
    /// One record per image, in the order of their first lines.
    pub records: Vec<Record>,
    /// Warnings for the user (records that repeat an image), each naming the file.
    pub warnings: Vec<String>,
}

/// Reads a results file: its header and one record per image in the order of their first lines.
/// A partial last line (a killed writer's) is ignored; any other unreadable line is an error
/// naming the file and line. Records that repeat an image (the same identity: two runs that once
/// wrote one file, an input given twice) are reduced to the last of each, with a warning.
pub fn read_results_noting(path: &Path) -> Result<ReadResults, ResultsError> {
    let file = crate::limits::open_regular(path).map_err(io_error(path, "cannot open"))?;
    let (header, records, dropped) = scan(file, path)?.unique(false);
    let mut warnings = Vec::new();
    if dropped > 0 {
        warnings.push(format!(
            "{}: {dropped} record(s) repeat an image already in the file (same path and content); the last record of each image is used",
            path.display()
        ));
    }
    Ok(ReadResults {
        header,
        records,
        warnings,
    })
}

/// [`read_results_noting`] without its warnings (for tools and tests that want the records).
pub fn read_results(path: &Path) -> Result<(Header, Vec<Record>), ResultsError> {
    read_results_noting(path).map(|r| (r.header, r.records))
}

/// The header of the results file at `path`, when it is one (nothing else is read).
pub fn read_header(path: &Path) -> Option<Header> {
    let f = crate::limits::open_regular(path).ok()?;
    let mut line = String::new();
    BufReader::new(f.take(64 << 20)).read_line(&mut line).ok()?;
    parse_header(path, &line).ok()
}

/// How [`RecordWriter::open_with`] treats an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Run the images whose record is an error again (their error records are dropped).
    pub retry_errors: bool,
    /// Replace a file that is not a results file (`--force`) instead of refusing.
    pub replace_foreign: bool,
}

impl Default for Resume {
    fn default() -> Self {
        Resume {
            retry_errors: true,
            replace_foreign: false,
        }
    }
}

/// Appends image records to a results file, one complete line at a time, holding the file's lock.
#[derive(Debug)]
pub struct RecordWriter {
    file: File,
    path: PathBuf,
}

/// Takes the advisory lock of an open results file.
pub(super) fn lock(file: &File, path: &Path) -> Result<(), ResultsError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(OutputError::InUse(path.to_path_buf()).into())
        }
        // File systems without locks (some network mounts): go on unlocked, as before locks.
        Err(std::fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
            Ok(())
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io_error(path, "cannot lock")(e)),
    }
}

/// Whether the open file is still the one at `path` (not replaced since it was opened).
fn still_there(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        #[cfg(unix)]
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            (a.dev(), a.ino()) == (b.dev(), b.ino())
        }
        #[cfg(not(unix))]
        (Ok(_), Ok(_)) => true,
        _ => false,
    }
}

fn header_line(path: &Path, header: &Header) -> Result<String, ResultsError> {
    let mut v = serde_json::to_value(header).map_err(|e| line_error(path, 1, e))?;
    v["kind"] = "header".into();
    Ok(v.to_string() + "\n")
}

/// Writes `header` and `records` to a locked temporary file and moves it into place (replacing
/// whatever is there only if `replace`); `None` when `!replace` and another process was first.
fn write_whole(
    path: &Path,
    header: &Header,
    records: &[Record],
    replace: bool,
) -> Result<Option<File>, ResultsError> {
    let mut tmp = AtomicFile::create(path)?;
    lock(tmp.file(), path)?;
    let mut text = header_line(path, header)?;
    for r in records {
        text += &serde_json::to_string(r).map_err(|e| line_error(path, 0, e))?;
        text.push('\n');
    }
    tmp.write_all(text.as_bytes())
        .map_err(io_error(path, "cannot write"))?;
    Ok(if replace {
        Some(tmp.commit()?)
    } else {
        tmp.commit_new()?
    })
}

/// What an existing results file held when a run reopened it.
#[derive(Clone, Debug, Default)]
pub struct Resumed {
    /// The file's header (`None`: the file was created).
    pub header: Option<Header>,
    /// Its records, one per image, without the error records to retry.
    pub records: Vec<Record>,
    /// What the user should know (error records retried, repeated records dropped).
    pub notes: Vec<String>,
}

impl RecordWriter {
    /// [`RecordWriter::open_with`] with the defaults: error records are retried, a file that is
    /// not a results file is refused.
    pub fn open(path: &Path, header: &Header) -> Result<(Self, Resumed), ResultsError> {
        Self::open_with(path, header, Resume::default())
    }

    /// Creates `path` with `header`, or reopens it for the same run: returns the records already
    /// there (error records only without `retry_errors`), one per image. Another configuration
    /// is an error, never a silent mix; so is a file another run holds.
    pub fn open_with(
        path: &Path,
        header: &Header,
        resume: Resume,
    ) -> Result<(Self, Resumed), ResultsError> {
        // A few rounds: another process may create or replace the file between our steps.
        for _ in 0..16 {
            let file = match File::options().read(true).append(true).open(path) {
                Ok(f) => f,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    match write_whole(path, header, &[], false)? {
                        Some(file) => return Ok((Self::new(file, path), Resumed::default())),
                        None => continue,
                    }
                }
                Err(e) => return Err(io_error(path, "cannot open")(e)),
            };
            if !file.metadata().is_ok_and(|m| m.is_file()) {
                return Err(OutputError::Folder(path.to_path_buf()).into());
            }
            lock(&file, path)?;
            if !still_there(&file, path) {
                continue;
            }
            return Self::reopen(file, path, header, resume);
        }
        Err(OutputError::InUse(path.to_path_buf()).into())
    }

    fn new(file: File, path: &Path) -> Self {
        RecordWriter {
            file,
            path: path.to_path_buf(),
        }
    }

    /// Resumes the locked, existing file.
    fn reopen(
        mut file: File,
        path: &Path,
        header: &Header,
        resume: Resume,
    ) -> Result<(Self, Resumed), ResultsError> {
        let len = file.metadata().map_err(io_error(path, "unreadable"))?.len();
        let scanned = if len == 0 {
            Err(ResultsError::NoHeader(path.to_path_buf()))
        } else {
            file.rewind().map_err(io_error(path, "unreadable"))?;
            scan(&file, path)
        };
        let scanned = match scanned {
            Ok(s) => s,
            // No results header: an empty file is started anew, another kind of file only with
            // `--force`. A results file with a bad line is never replaced.
            Err(ResultsError::NoHeader(_) | ResultsError::Line { line: 1, .. })
                if len == 0 || resume.replace_foreign =>
            {
                let file = write_whole(path, header, &[], true)?.expect("replacing always writes");
                return Ok((Self::new(file, path), Resumed::default()));
            }
            Err(ResultsError::NoHeader(_) | ResultsError::Line { line: 1, .. }) => {
                return Err(OutputError::Foreign {
                    path: path.to_path_buf(),
                    kind: "results file",
                }
                .into())
            }
            Err(e) => return Err(e),
        };
        if !scanned.header.same_run(header) {
            return Err(ResultsError::OtherRun {
                path: path.to_path_buf(),
                difference: scanned.header.first_difference(header),
            });
        }
        let complete_len = scanned.complete_len;
        let (old_header, records, dropped) = scanned.unique(true);
        let failed = records
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
            .count();
        let retry = resume.retry_errors && failed > 0;
        let mut notes = Vec::new();
        if dropped > 0 {
            notes.push(format!(
                "{}: {dropped} record(s) repeated an image already in the file; the last of each is kept",
                path.display()
            ));
        }
        if retry {
            notes.push(format!(
                "{}: retrying {failed} image(s) whose record is an error (--no-retry keeps them)",
                path.display()
            ));
        }
        let keep: Vec<Record> = records
            .into_iter()
            .filter(|r| !retry || r.result().is_some())
            .collect();
        let mut writer = Self::new(file, path);
        if dropped > 0 || retry {
            // Rewritten whole (atomically, still locked): one record per image, errors to retry
            // dropped, so that the file never holds two records of one image.
            writer.rewrite(&old_header, &keep)?;
        } else {
            if complete_len < len {
                // Cut a torn last line (a killed writer's) before appending.
                writer
                    .file
                    .set_len(complete_len)
                    .map_err(io_error(path, "cannot write"))?;
            }
            writer
                .file
                .seek(std::io::SeekFrom::End(0))
                .map_err(io_error(path, "cannot write"))?;
        }
        let resumed = Resumed {
            header: Some(old_header),
            records: keep,
            notes,
        };
        Ok((writer, resumed))
    }

    /// Replaces the file's content with `header` and `records`, atomically and still holding
    /// the lock (a resumed run whose records were re-matched to its images); later records are
    /// appended to the new file.
    pub fn rewrite(&mut self, header: &Header, records: &[Record]) -> Result<(), ResultsError> {
        self.file =
            write_whole(&self.path, header, records, true)?.expect("replacing always writes");
        Ok(())
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

    /// The results file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::results::test_fixtures::{lines, write, BEFORE_SCHEMA};
    use crate::io::results::Method;

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
        let (mut w, resumed) = RecordWriter::open(&p, &h).unwrap();
        let done: Vec<u64> = resumed.records.iter().map(|r| r.index).collect();
        assert_eq!(done, vec![recs[0].index]);
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
}
