//! Which files a command may write: never one of its inputs, never twice, and an existing file
//! only when it is neuronpath's own kind of output (or with `--force`).
use super::error::OutputError;
use super::kind::Kind;
use std::path::{Path, PathBuf};

/// A place on disk, comparable however it was spelled.
#[derive(Clone, Debug)]
struct Place {
    given: PathBuf,
    canonical: PathBuf,
    /// (device, inode) of an existing file or folder.
    id: Option<(u64, u64)>,
    folder: bool,
}

#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// `path` absolute, resolved component by component as the kernel would (links followed while
/// the path exists, `..` taken after them), so that two spellings of one place compare equal
/// even before the file exists.
fn canonical(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                out.push(name);
                if let Ok(real) = out.canonicalize() {
                    out = real;
                }
            }
            other => out.push(other),
        }
    }
    out
}

impl Place {
    fn new(path: &Path) -> Place {
        let meta = std::fs::metadata(path).ok();
        Place {
            given: path.to_path_buf(),
            canonical: canonical(path),
            id: meta.as_ref().and_then(file_id),
            folder: meta.is_some_and(|m| m.is_dir()),
        }
    }

    fn same(&self, other: &Place) -> bool {
        match (self.id, other.id) {
            (Some(a), Some(b)) => a == b,
            _ => self.canonical == other.canonical,
        }
    }
}

/// Whether two paths name the same file (device and inode when both exist, else the canonical
/// paths).
pub fn same_file(a: &Path, b: &Path) -> bool {
    Place::new(a).same(&Place::new(b))
}

/// The outputs one command may write, checked before it writes (or computes) anything.
#[derive(Debug, Default)]
pub struct Outputs {
    force: bool,
    inputs: Vec<Place>,
    claimed: Vec<(Place, &'static str)>,
}

impl Outputs {
    /// A guard; `force` lets existing files of other kinds be replaced (never inputs).
    pub fn new(force: bool) -> Outputs {
        Outputs {
            force,
            ..Default::default()
        }
    }

    /// Records an input (a file or folder the command reads).
    pub fn input(&mut self, path: &Path) -> &mut Outputs {
        self.inputs.push(Place::new(path));
        self
    }

    /// Records several inputs.
    pub fn inputs<P: AsRef<Path>>(&mut self, paths: impl IntoIterator<Item = P>) -> &mut Outputs {
        for p in paths {
            self.input(p.as_ref());
        }
        self
    }

    /// Claims `path` for an output of `kind`: refused when it is an input or inside an input
    /// folder, already claimed by this command, a folder, or an existing file that is not of
    /// `kind` (unless `--force`).
    pub fn check(&mut self, path: &Path, kind: Kind) -> Result<(), OutputError> {
        let p = Place::new(path);
        for i in &self.inputs {
            if p.same(i) {
                return Err(OutputError::IsInput {
                    path: path.to_path_buf(),
                    input: i.given.clone(),
                });
            }
            if i.folder && p.canonical.starts_with(&i.canonical) {
                return Err(OutputError::InsideInput {
                    path: path.to_path_buf(),
                    folder: i.given.clone(),
                });
            }
        }
        if let Some((_, first)) = self.claimed.iter().find(|(c, _)| p.same(c)) {
            return Err(OutputError::Twice {
                path: path.to_path_buf(),
                first,
            });
        }
        if p.folder {
            return Err(OutputError::Folder(path.to_path_buf()));
        }
        if !self.force && path.exists() && !kind.is_ours(path) {
            return Err(OutputError::Foreign {
                path: path.to_path_buf(),
                kind: kind.name(),
            });
        }
        self.claimed.push((p, kind.name()));
        Ok(())
    }

    /// Claims the files of an output set in `dir`: `marked`, a JSON file with the mark, and
    /// `others` (CSV, SVG ...), which are ours when `marked` is.
    pub fn check_set(
        &mut self,
        dir: &Path,
        marked: &str,
        others: &[&str],
    ) -> Result<(), OutputError> {
        let m = dir.join(marked);
        self.check(&m, Kind::Json)?;
        for o in others {
            self.check(&dir.join(o), Kind::Beside(m.clone()))?;
        }
        Ok(())
    }

    /// Whether `--force` was given.
    pub fn force(&self) -> bool {
        self.force
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_refused_however_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("models")).unwrap();
        std::fs::write(d.join("models/m.safetensors"), b"weights").unwrap();
        std::fs::write(d.join("r.jsonl"), b"results").unwrap();
        let mut g = Outputs::new(true);
        g.input(&d.join("models/../r.jsonl"))
            .input(&d.join("models"));
        let e = g.check(&d.join("r.jsonl"), Kind::Report).unwrap_err();
        assert!(matches!(e, OutputError::IsInput { .. }), "{e}");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.join("r.jsonl"), d.join("link.jsonl")).unwrap();
            let e = g.check(&d.join("link.jsonl"), Kind::Report).unwrap_err();
            assert!(matches!(e, OutputError::IsInput { .. }), "{e}");
            std::fs::hard_link(d.join("r.jsonl"), d.join("hard.jsonl")).unwrap();
            let e = g.check(&d.join("hard.jsonl"), Kind::Report).unwrap_err();
            assert!(matches!(e, OutputError::IsInput { .. }), "{e}");
        }
        // Inside an input folder, existing or not.
        for p in ["models/m.safetensors", "models/new/x.html"] {
            let e = g.check(&d.join(p), Kind::Report).unwrap_err();
            assert!(e.to_string().contains("inside the input folder"), "{e}");
        }
        assert_eq!(std::fs::read(d.join("r.jsonl")).unwrap(), b"results");
        // Elsewhere is fine, once.
        g.check(&d.join("out/report.html"), Kind::Report).unwrap();
        let e = g
            .check(&d.join("out/../out/report.html"), Kind::Json)
            .unwrap_err();
        assert!(e.to_string().contains("already writes its report"), "{e}");
    }

    #[test]
    fn foreign_files_need_force() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notes.html");
        std::fs::write(&p, "<html>my notes</html>").unwrap();
        let e = Outputs::new(false).check(&p, Kind::Report).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        Outputs::new(true).check(&p, Kind::Report).unwrap();
        std::fs::write(&p, super::super::mark_html("<html><head></head></html>")).unwrap();
        Outputs::new(false).check(&p, Kind::Report).unwrap();
        let e = Outputs::new(true)
            .check(dir.path(), Kind::Report)
            .unwrap_err();
        assert!(matches!(e, OutputError::Folder(_)), "{e}");
    }
}
