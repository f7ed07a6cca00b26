//! Write-to-temporary-then-rename: the one way outputs reach their place.
use super::error::OutputError;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temporary files of one process (threads, several outputs at once).
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> OutputError {
    let path = path.to_path_buf();
    move |source| OutputError::Io { path, what, source }
}

/// The folder a file goes into (`.` for a bare name).
fn folder(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A file being written beside its destination (`.NAME.PID.N.tmp`). [`AtomicFile::commit`]
/// flushes it to disk and renames it over the destination; dropped uncommitted (an error, a
/// panic), it is removed and the destination is untouched.
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    done: bool,
}

impl AtomicFile {
    /// Starts writing `path` (its folder is created when missing).
    pub fn create(path: &Path) -> Result<AtomicFile, OutputError> {
        let name = path
            .file_name()
            .ok_or_else(|| OutputError::NoFileName(path.to_path_buf()))?;
        let dir = folder(path);
        std::fs::create_dir_all(dir).map_err(io(dir, "cannot create the output folder"))?;
        loop {
            let mut tmp_name = OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(
                ".{}.{}.tmp",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let tmp = path.with_file_name(tmp_name);
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(file) => {
                    return Ok(AtomicFile {
                        file,
                        tmp,
                        path: path.to_path_buf(),
                        done: false,
                    })
                }
                // A leftover of a killed process with the same id: take the next name.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(&tmp, "cannot create a temporary file")(e)),
            }
        }
    }

    /// The destination.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open temporary file (to lock it before it becomes visible).
    pub fn file(&self) -> &File {
        &self.file
    }

    fn finish(&mut self) -> Result<(), OutputError> {
        self.file
            .flush()
            .and_then(|()| self.file.sync_all())
            .map_err(io(&self.tmp, "cannot write"))?;
        // A replaced file keeps its permissions (a shared results file stays shared).
        if let Ok(m) = std::fs::metadata(&self.path) {
            let _ = self.file.set_permissions(m.permissions());
        }
        Ok(())
    }

    /// Flushes the data to disk and renames it over the destination; returns the open file.
    pub fn commit(mut self) -> Result<File, OutputError> {
        self.finish()?;
        std::fs::rename(&self.tmp, &self.path).map_err(io(&self.path, "cannot write"))?;
        self.done = true;
        sync_folder(&self.path);
        self.file
            .try_clone()
            .map_err(io(&self.path, "cannot write"))
    }

    /// [`AtomicFile::commit`] only when nothing is at the destination yet (a hard link, which
    /// never replaces); `None` when something is (another process was first). File systems
    /// without hard links fall back to a plain rename after a check.
    pub fn commit_new(mut self) -> Result<Option<File>, OutputError> {
        self.finish()?;
        match std::fs::hard_link(&self.tmp, &self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
            Err(_) if !self.path.exists() => {
                std::fs::rename(&self.tmp, &self.path).map_err(io(&self.path, "cannot write"))?;
            }
            Err(e) => return Err(io(&self.path, "cannot write")(e)),
        }
        // The link is in place: the temporary name goes (Drop removes it).
        sync_folder(&self.path);
        self.file
            .try_clone()
            .map(Some)
            .map_err(io(&self.path, "cannot write"))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Makes a rename durable (best effort: not every file system can sync a folder).
fn sync_folder(path: &Path) {
    if let Ok(d) = File::open(folder(path)) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed to disk,
/// renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(io(path, "cannot write"))?;
    f.commit().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/out.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(names(&dir.path().join("sub")), vec!["out.json"]);
    }

    #[test]
    fn an_abandoned_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        std::fs::write(&p, b"precious").unwrap();
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"half of the new").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&p).unwrap(), b"precious");
        assert_eq!(names(dir.path()), vec!["out.txt"]);
        // A folder in the way is an error, and nothing is left behind.
        let d = dir.path().join("folder");
        std::fs::create_dir(&d).unwrap();
        assert!(write_atomic(&d, b"x").is_err());
        assert_eq!(names(dir.path()), vec!["folder", "out.txt"]);
    }

    #[test]
    fn commit_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        let mut a = AtomicFile::create(&p).unwrap();
        a.write_all(b"a\n").unwrap();
        let mut b = AtomicFile::create(&p).unwrap();
        b.write_all(b"b\n").unwrap();
        assert!(a.commit_new().unwrap().is_some());
        assert!(b.commit_new().unwrap().is_none());
        assert_eq!(std::fs::read(&p).unwrap(), b"a\n");
        assert_eq!(names(dir.path()), vec!["r.jsonl"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_replaced_file_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("shared.jsonl");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o664)).unwrap();
        write_atomic(&p, b"new").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o664);
    }
}
