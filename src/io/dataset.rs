//! Data sets: ImageNet-style class folders, `.npy` input arrays and JSON label lists.
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

/// Errors from listing or reading a data set.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The data set root is a file.
    #[error("data set root {} is not a directory", path.display())]
    NotADirectory {
        /// The root given.
        path: PathBuf,
    },
    /// The data set root holds no class folders.
    #[error("data set root {} has no class sub-folders", path.display())]
    NoClasses {
        /// The root given.
        path: PathBuf,
    },
    /// Class folders without a single image (torchvision refuses them too).
    #[error("data set root {}: no .jpg/.jpeg/.png files in class folder(s) {classes:?}", path.display())]
    EmptyClasses {
        /// The root given.
        path: PathBuf,
        /// The class folders without images.
        classes: Vec<String>,
    },
    /// An input array that is not a little-endian float C-order `.npy` of the expected shape.
    #[error("invalid .npy file {}: {reason}", path.display())]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A labels file that is not a JSON array of class indices or known names.
    #[error("invalid labels file {}: {reason}", path.display())]
    Labels {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// An ImageNet-style folder, listed like torchvision's `ImageFolder`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFolder {
    /// Class folder names, sorted; the class index is the position.
    pub classes: Vec<String>,
    /// `(image path, class index)`, class by class, sorted within each class.
    pub items: Vec<(PathBuf, usize)>,
}

impl ImageFolder {
    /// Lists `root/<class>/**/<image>` exactly as torchvision's `ImageFolder` orders it:
    /// classes are the sorted sub-folder names, and each class folder is walked recursively
    /// (following links) with directories and file names in sorted order. Only `.jpg`, `.jpeg`
    /// and `.png` files (any case) count. Like torchvision, a class folder without images is an
    /// error rather than a silently missing class.
    pub fn open(root: &Path) -> Result<Self, DatasetError> {
        let meta = fs::metadata(root).map_err(|source| io_err(root, source))?;
        if !meta.is_dir() {
            return Err(DatasetError::NotADirectory {
                path: root.to_path_buf(),
            });
        }
        // Names for display (lossy for a name that is not UTF-8), paths as they are.
        let (mut classes, mut class_dirs) = (Vec::new(), Vec::new());
        for (name, path) in sorted_entries(root)? {
            // `metadata` follows links, like Python's `DirEntry.is_dir()`.
            if fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                classes.push(name.to_string_lossy().into_owned());
                class_dirs.push(path);
            }
        }
        if classes.is_empty() {
            return Err(DatasetError::NoClasses {
                path: root.to_path_buf(),
            });
        }
        let mut items = Vec::new();
        let mut empty = Vec::new();
        for (idx, (class, dir)) in classes.iter().zip(&class_dirs).enumerate() {
            let mut files = Vec::new();
            walk_images(dir, &mut HashSet::new(), &mut files)?;
            if files.is_empty() {
                empty.push(class.clone());
            }
            // Python sorts os.walk's (dir, files) tuples, so the order is by directory path
            // string first, then file name.
            files.sort();
            items.extend(files.into_iter().map(|(dir, name)| (dir.join(name), idx)));
        }
        if !empty.is_empty() {
            return Err(DatasetError::EmptyClasses {
                path: root.to_path_buf(),
                classes: empty,
            });
        }
        Ok(ImageFolder { classes, items })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the folder lists no image.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

fn io_err(path: &Path, source: std::io::Error) -> DatasetError {
    DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `(file name, path)` of a directory's entries, sorted by the name's bytes (code point order
/// for UTF-8 names, as Python sorts them; a name that is not UTF-8 is kept exactly and sorted by
/// its bytes, where Python would sort its surrogate escapes).
fn sorted_entries(dir: &Path) -> Result<Vec<(OsString, PathBuf)>, DatasetError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        out.push((entry.file_name(), entry.path()));
    }
    out.sort_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
    Ok(out)
}

fn is_image_name(name: &OsStr) -> bool {
    let lower = name.to_string_lossy().to_ascii_lowercase();
    [".jpg", ".jpeg", ".png"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// Collects `(directory, file name)` of the images under `dir`, recursing into sub-folders.
/// `seen` holds canonical directories already visited, so link cycles terminate.
fn walk_images(
    dir: &Path,
    seen: &mut HashSet<PathBuf>,
    out: &mut Vec<(PathBuf, OsString)>,
) -> Result<(), DatasetError> {
    let canonical = fs::canonicalize(dir).map_err(|e| io_err(dir, e))?;
    if !seen.insert(canonical) {
        return Ok(());
    }
    for (name, path) in sorted_entries(dir)? {
        match fs::metadata(&path) {
            Ok(m) if m.is_dir() => walk_images(&path, seen, out)?,
            Ok(_) if is_image_name(&name) => out.push((dir.to_path_buf(), name)),
            // Broken links and other files are skipped, as os.walk does.
            _ => {}
        }
    }
    Ok(())
}

/// Element type of a `.npy` array this reader accepts.
#[derive(Clone, Copy)]
enum NpyDtype {
    F32,
    F64,
}

/// Parses the `.npy` header; returns the dtype, the shape and the offset of the data.
fn parse_npy_header(bytes: &[u8]) -> Result<(NpyDtype, Vec<usize>, usize), String> {
    let h = crate::model::load::npy::parse_header(bytes)?;
    let dtype = match h.descr.as_str() {
        "<f4" => NpyDtype::F32,
        "<f8" => NpyDtype::F64,
        other => {
            return Err(format!(
                "dtype {other} is not supported (need little-endian float32 '<f4' or float64 '<f8')"
            ))
        }
    };
    if h.fortran_order {
        return Err("Fortran-order arrays are not supported (save C-order)".into());
    }
    Ok((dtype, h.shape, h.data_offset))
}

/// Reads a little-endian float32 or float64 C-order `.npy` array (float64 is narrowed to f32).
/// Returns `(shape, data)`.
pub fn read_npy_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>), DatasetError> {
    let bytes = crate::limits::read_regular(path).map_err(|e| io_err(path, e))?;
    let npy_err = |reason: String| DatasetError::Npy {
        path: path.to_path_buf(),
        reason,
    };
    let (dtype, shape, offset) = parse_npy_header(&bytes).map_err(npy_err)?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| npy_err(format!("shape {shape:?} overflows")))?;
    let item = match dtype {
        NpyDtype::F32 => 4,
        NpyDtype::F64 => 8,
    };
    let data = &bytes[offset..];
    if count.checked_mul(item) != Some(data.len()) {
        return Err(npy_err(format!(
            "shape {shape:?} needs {count} values of {item} bytes but the file holds {} data bytes (truncated?)",
            data.len()
        )));
    }
    let values = match dtype {
        NpyDtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        NpyDtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
    };
    Ok((shape, values))
}

/// Reads pre-processed inputs of shape (N, 3, H, W); returns `(n, c, h, w, data)`.
pub fn read_input_npy(path: &Path) -> Result<(usize, usize, usize, usize, Vec<f32>), DatasetError> {
    let (shape, data) = read_npy_f32(path)?;
    match shape[..] {
        [n, 3, h, w] => Ok((n, 3, h, w, data)),
        _ => Err(DatasetError::Npy {
            path: path.to_path_buf(),
            reason: format!("expected input shape (N, 3, H, W), got {shape:?}"),
        }),
    }
}

/// Reads a JSON array of class labels: non-negative integers, or class names resolved against
/// `names` (exactly, else ignoring case), e.g. `[3, "Coat", "ankle boot"]`.
pub fn read_labels_json(path: &Path, names: Option<&[String]>) -> Result<Vec<usize>, DatasetError> {
    let bad = |reason: String| DatasetError::Labels {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = crate::limits::read_regular(path).map_err(|e| io_err(path, e))?;
    let values: Vec<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "expected a JSON array of class indices or class names: {e}"
        ))
    })?;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            serde_json::Value::Number(n) => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| bad(format!("entry {i}: {n} is not a class index (a non-negative integer)"))),
            serde_json::Value::String(s) => {
                let Some(names) = names else {
                    return Err(bad(format!(
                        "entry {i}: class name {s:?}, but neither the model nor the inputs name their classes: give indices"
                    )));
                };
                names
                    .iter()
                    .position(|n| n == s)
                    .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(s)))
                    .ok_or_else(|| {
                        let some: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
                        bad(format!(
                            "entry {i}: no class is named {s:?} ({} classes: {}{})",
                            names.len(),
                            some.join(", "),
                            if names.len() > 5 { ", ..." } else { "" }
                        ))
                    })
            }
            other => Err(bad(format!(
                "entry {i}: {other} is neither a class index nor a class name"
            ))),
        })
        .collect()
}
