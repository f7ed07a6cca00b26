//! Zip containers (`.npz`, PyTorch `.pth`/`.bin`) read within a decoding budget: every member's
//! declared size is checked against the budget before anything is allocated, a member may not
//! decode to more than it declares, and its CRC is verified.
use super::ModelError;
use crate::limits::{Budget, Limits};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

pub(crate) struct Archive {
    path: PathBuf,
    zip: zip::ZipArchive<File>,
    budget: Budget,
}

/// [`crate::limits::open_regular`] with the error naming the file.
pub(crate) fn open_regular(path: &Path) -> Result<File, ModelError> {
    crate::limits::open_regular(path).map_err(|cause| ModelError::Io {
        path: path.to_path_buf(),
        cause,
    })
}

impl Archive {
    pub(crate) fn open(path: &Path, limits: &Limits) -> Result<Archive, ModelError> {
        let file = open_regular(path)?;
        let len = file
            .metadata()
            .map_err(|cause| ModelError::Io {
                path: path.to_path_buf(),
                cause,
            })?
            .len();
        let zip = zip::ZipArchive::new(file)
            .map_err(|e| ModelError::format(path, format!("broken zip container: {e}")))?;
        Ok(Archive {
            path: path.to_path_buf(),
            zip,
            budget: Budget::new(limits.decode_budget(len)),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Member names, in archive order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.zip
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.into_owned()))
            .collect()
    }

    /// A whole member, after checking its declared size against the budget and `expected`
    /// (when the reader knows how long it must be); its CRC is verified at the end.
    pub(crate) fn read(
        &mut self,
        name: &str,
        expected: Option<u64>,
    ) -> Result<Vec<u8>, ModelError> {
        let path = self.path.clone();
        let bad = |msg: String| ModelError::format(&path, format!("zip member {name:?}: {msg}"));
        let entry = self.zip.by_name(name).map_err(|e| bad(e.to_string()))?;
        let declared = entry.size();
        if let Some(want) = expected {
            if declared != want {
                return Err(bad(format!(
                    "declares {declared} bytes, its header says {want}"
                )));
            }
        }
        self.budget.charge(declared, "it").map_err(bad)?;
        let cap = usize::try_from(declared).map_err(|_| bad("too large".into()))?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(cap)
            .map_err(|_| bad(format!("cannot allocate {declared} bytes")))?;
        // One byte past the declared size reveals a member that decodes to more than it says.
        entry
            .take(declared + 1)
            .read_to_end(&mut buf)
            .map_err(|e| bad(format!("corrupt data ({e})")))?;
        if buf.len() as u64 != declared {
            return Err(bad(format!(
                "decodes to {}{} bytes but declares {declared}",
                buf.len(),
                if buf.len() as u64 > declared { "+" } else { "" }
            )));
        }
        Ok(buf)
    }

    /// Charges an allocation that is not a member read (a materialized tensor).
    pub(crate) fn charge(&mut self, bytes: u64, what: &str) -> Result<(), ModelError> {
        self.budget
            .charge(bytes, what)
            .map_err(|m| ModelError::format(&self.path, m))
    }
}
