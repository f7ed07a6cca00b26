//! The images a command runs on, in a deterministic order: files, ImageNet-style class folders,
//! `.npy` arrays of preprocessed inputs, or images embedded in the binary.
use super::dataset::{read_input_npy, read_labels_json, DatasetError, ImageFolder};
use super::preprocess::{decode_rgb_bytes, preprocess_rgb, Normalization, PreprocessError};
use super::results::ImageId;
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why inputs could not be gathered or loaded; each message names the file or image.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A path that is neither a file nor a folder.
    #[error("{}: no such file or folder", .0.display())]
    Missing(PathBuf),
    /// A path that exists but is no regular file or folder (a FIFO, a device).
    #[error("{}: not a regular file (devices, FIFOs and sockets are never read)", .0.display())]
    NotRegular(PathBuf),
    /// The labels file does not give one label per image outside class folders.
    #[error("{}: {given} labels for {images} images outside class folders", labels.display())]
    LabelCount {
        /// The labels file.
        labels: PathBuf,
        /// Labels it holds.
        given: usize,
        /// Images outside class folders.
        images: usize,
    },
    /// No image among the inputs.
    #[error("no input images")]
    NoInputs,
    /// A preprocessed array whose images are not the model's size.
    #[error("{source_name}: array images are {height}x{width}, the model needs {size}x{size}")]
    ArraySize {
        /// The image (`array.npy[row]`).
        source_name: String,
        /// Its height and width.
        height: usize,
        /// See `height`.
        width: usize,
        /// The model's input size.
        size: usize,
    },
    /// A preprocessed image with NaN or infinite values (from an `.npy` array, or a
    /// normalisation that divides by zero).
    #[error("{source_name}: {count} of its {total} values are NaN or infinite")]
    NonFinite {
        /// The image (`array.npy[row]`).
        source_name: String,
        /// How many values are not finite.
        count: usize,
        /// Values of the image.
        total: usize,
    },
    /// An image whose bytes are not those its record was computed from.
    #[error("{source_name}: changed since it was recorded (sha256 {found}, recorded {recorded})")]
    Changed {
        /// The image.
        source_name: String,
        /// The hash of the bytes read now.
        found: String,
        /// The hash recorded.
        recorded: String,
    },
    /// An image file that cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// One image of a batch could not be read.
    #[error("cannot read {name}")]
    Read {
        /// The image (`Item::source`).
        name: String,
        /// Why.
        #[source]
        cause: Box<InputError>,
    },
    /// A class folder, `.npy` array or labels file could not be read.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// An image file could not be decoded.
    #[error(transparent)]
    Image(#[from] PreprocessError),
    /// The batch tensor could not be built.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

type Result<T, E = InputError> = std::result::Result<T, E>;

/// Where one image's pixels come from.
#[derive(Clone, Debug)]
pub enum Pixels {
    /// A PNG or JPEG file.
    File(PathBuf),
    /// Row `row` of a preprocessed (N, 3, H, W) array.
    Array {
        /// The whole array, shared by its rows.
        data: Arc<Vec<f32>>,
        /// Which image of the array.
        row: usize,
        /// (3, H, W) of one image.
        shape: [usize; 3],
    },
    /// PNG bytes compiled into the binary (the embedded samples).
    Embedded(&'static [u8]),
}

/// One input image.
#[derive(Clone, Debug)]
pub struct Item {
    /// Position in the whole input list (the same for the same listing; records are matched
    /// to images by [`Item::identity`], not by position).
    pub index: u64,
    /// Human-readable origin (file path, `array.npy[3]`, `embedded:...`).
    pub source: String,
    /// Ground-truth class, when known.
    pub label: Option<usize>,
    /// Where its pixels come from.
    pub pixels: Pixels,
    /// The path below the input given, starting with that input's own name (`data/Coat/a.png`
    /// for `data/`; `a.png` for the file `x/a.png`), or the embedded sample's name.
    pub id_path: PathBuf,
    /// The array's position in an `.npy` file of N arrays.
    pub row: Option<u64>,
    /// The content hash the pixels must have when loaded (`None`: not checked).
    pub sha256: Option<String>,
}

/// `path` below `root`, starting with `root`'s own name (the path itself when it is not below).
fn below(root: &Path, path: &Path) -> PathBuf {
    let rel = path.strip_prefix(root).unwrap_or(path);
    match root.file_name() {
        // A file given itself: its name (joining an empty path would add a slash).
        Some(name) if rel.as_os_str().is_empty() => PathBuf::from(name),
        Some(name) => Path::new(name).join(rel),
        None => rel.to_path_buf(),
    }
}

fn hex(digest: impl AsRef<[u8]>) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Inputs with their class names (from class folders), if any.
pub struct Inputs {
    /// The images, in input order.
    pub items: Vec<Item>,
    /// Class names in label order, when the inputs name them.
    pub class_names: Option<Vec<String>>,
}

/// Gathers items from paths: class folders (labels from folder order), `.npy` files (labels from
/// `labels`), and image files (labels from `labels`, in order, if given). Labels given by class
/// name need [`gather_named`].
pub fn gather(paths: &[PathBuf], labels: Option<&Path>) -> Result<Inputs> {
    gather_named(paths, labels, None)
}

/// [`gather`], with the labels file's class names resolved against `names` (the model's), else
/// against the class folders among `paths`.
pub fn gather_named(
    paths: &[PathBuf],
    labels: Option<&Path>,
    names: Option<&[String]>,
) -> Result<Inputs> {
    let folder_names: Option<Vec<String>> = match (names, labels) {
        (None, Some(_)) => paths
            .iter()
            .filter(|p| p.is_dir())
            .find_map(|p| ImageFolder::open(p).ok().map(|f| f.classes)),
        _ => None,
    };
    let given: Option<Vec<usize>> = match labels {
        Some(p) => Some(read_labels_json(p, names.or(folder_names.as_deref()))?),
        None => None,
    };
    let mut items = Vec::new();
    let mut class_names = None;
    let mut loose = 0usize;
    // Loose images (files, .npy rows) take the given labels in order.
    let next_label = |loose: &mut usize| {
        let label = given.as_ref().and_then(|g| g.get(*loose).copied());
        *loose += 1;
        label
    };
    for p in paths {
        if p.is_dir() {
            let folder = ImageFolder::open(p)?;
            for (path, label) in folder.items {
                items.push(Item {
                    index: items.len() as u64,
                    source: path.display().to_string(),
                    label: Some(label),
                    id_path: below(p, &path),
                    pixels: Pixels::File(path),
                    row: None,
                    sha256: None,
                });
            }
            class_names = Some(folder.classes);
        } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
            let (n, c, h, w, data) = read_input_npy(p)?;
            let data = Arc::new(data);
            for row in 0..n {
                let label = next_label(&mut loose);
                items.push(Item {
                    index: items.len() as u64,
                    source: format!("{}[{row}]", p.display()),
                    label,
                    pixels: Pixels::Array {
                        data: data.clone(),
                        row,
                        shape: [c, h, w],
                    },
                    id_path: below(p, p),
                    row: Some(row as u64),
                    sha256: None,
                });
            }
        } else if p.is_file() {
            let label = next_label(&mut loose);
            items.push(Item {
                index: items.len() as u64,
                source: p.display().to_string(),
                label,
                pixels: Pixels::File(p.clone()),
                id_path: below(p, p),
                row: None,
                sha256: None,
            });
        } else if std::fs::metadata(p).is_ok() {
            return Err(InputError::NotRegular(p.clone()));
        } else {
            return Err(InputError::Missing(p.clone()));
        }
    }
    if let (Some(g), Some(path)) = (&given, labels) {
        if g.len() != loose {
            return Err(InputError::LabelCount {
                labels: path.to_path_buf(),
                given: g.len(),
                images: loose,
            });
        }
    }
    if items.is_empty() {
        return Err(InputError::NoInputs);
    }
    Ok(Inputs { items, class_names })
}

/// Preprocessing of one model's inputs.
#[derive(Clone, Copy, Debug)]
pub struct Preprocess {
    /// Side in pixels the images are resized to.
    pub size: usize,
    /// Per-channel normalisation after scaling to [0, 1].
    pub norm: Normalization,
}

/// The key that seeds an array row's random choices (the random baseline), as `discover`
/// derives it from the row's identity: the first 64 bits of the SHA-256 of its values as
/// little-endian f32 ([`Item::content_sha256`], [`ImageId::content_key`]). For callers that hold
/// the array in memory (the Python module), so that they draw what the CLI draws.
pub fn array_row_key(values: impl IntoIterator<Item = f32>) -> u64 {
    let d = row_digest(values);
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// SHA-256 of an array row's values as little-endian f32: its content hash.
fn row_digest(values: impl IntoIterator<Item = f32>) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for v in values {
        h.update(v.to_le_bytes());
    }
    h.finalize().into()
}

impl Item {
    /// Its identity with `sha256` as the content hash.
    pub fn identity(&self, sha256: Option<String>) -> ImageId {
        ImageId::new(&self.id_path, self.row, sha256)
    }

    /// SHA-256 of the image's bytes: the file's (streamed, nothing kept), the embedded
    /// sample's, or the array row's values as little-endian f32.
    pub fn content_sha256(&self) -> Result<String> {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        match &self.pixels {
            Pixels::File(p) => {
                let io = |source| InputError::Io {
                    path: p.clone(),
                    source,
                };
                let mut f = crate::limits::open_regular(p).map_err(io)?;
                std::io::copy(&mut f, &mut h).map_err(io)?;
            }
            Pixels::Embedded(bytes) => h.update(bytes),
            Pixels::Array { data, row, shape } => {
                let n = shape.iter().product::<usize>();
                return Ok(hex(row_digest(
                    data[row * n..(row + 1) * n].iter().copied(),
                )));
            }
        }
        Ok(hex(h.finalize()))
    }

    /// The preprocessed (3, S, S) pixels, all finite, checked against [`Item::sha256`].
    pub fn load(&self, pre: &Preprocess) -> Result<Vec<f32>> {
        self.load_hashed(pre).map(|(pixels, _)| pixels)
    }

    /// [`Item::load`], with the SHA-256 of the bytes the pixels were decoded from (see
    /// [`Item::content_sha256`]).
    pub fn load_hashed(&self, pre: &Preprocess) -> Result<(Vec<f32>, String)> {
        let (pixels, sha) = self.load_unchecked(pre)?;
        if let Some(want) = self.sha256.as_ref().filter(|w| **w != sha) {
            return Err(InputError::Changed {
                source_name: self.source.clone(),
                found: sha,
                recorded: want.clone(),
            });
        }
        let count = pixels.iter().filter(|v| !v.is_finite()).count();
        if count > 0 {
            return Err(InputError::NonFinite {
                source_name: self.source.clone(),
                count,
                total: pixels.len(),
            });
        }
        Ok((pixels, sha))
    }

    /// The pixels and the hash of the bytes they come from (read once).
    fn load_unchecked(&self, pre: &Preprocess) -> Result<(Vec<f32>, String)> {
        use sha2::Digest;
        let decode = |bytes: &[u8]| -> Result<(Vec<f32>, String)> {
            let img = decode_rgb_bytes(bytes, &self.source)?;
            let sha = hex(sha2::Sha256::digest(bytes));
            Ok((preprocess_rgb(&img, pre.size as u32, pre.norm), sha))
        };
        match &self.pixels {
            Pixels::File(p) => {
                let bytes =
                    crate::limits::read_regular(p).map_err(|source| PreprocessError::Io {
                        path: p.clone(),
                        source,
                    })?;
                decode(&bytes)
            }
            Pixels::Embedded(bytes) => decode(bytes),
            Pixels::Array { data, row, shape } => {
                if shape[1] != pre.size || shape[2] != pre.size {
                    return Err(InputError::ArraySize {
                        source_name: self.source.clone(),
                        height: shape[1],
                        width: shape[2],
                        size: pre.size,
                    });
                }
                let n = shape.iter().product::<usize>();
                Ok((
                    data[row * n..(row + 1) * n].to_vec(),
                    self.content_sha256()?,
                ))
            }
        }
    }
}

/// Loads a batch into a (B, 3, S, S) tensor; a bad image is an error naming it.
pub fn load_batch(items: &[&Item], pre: &Preprocess, device: &Device) -> Result<Tensor> {
    let mut all = Vec::with_capacity(items.len() * 3 * pre.size * pre.size);
    for it in items {
        all.extend(it.load(pre).map_err(|e| InputError::Read {
            name: it.source.clone(),
            cause: Box::new(e),
        })?);
    }
    Ok(Tensor::from_vec(
        all,
        (items.len(), 3, pre.size, pre.size),
        device,
    )?)
}
