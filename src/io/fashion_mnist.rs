//! Fashion-MNIST from its original gzipped IDX files (Debian package `dataset-fashion-mnist`),
//! the sample PNGs shipped with the embedded model, and the pixel normalisation it was trained with.
use candle_core::{Device, Tensor};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where the Debian package installs the files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Image side in pixels.
pub const SIDE: usize = 28;

/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;

/// The class names, in label order.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Per-channel mean of the embedded model's normalisation (pixels scaled to [0, 1]).
pub const MEAN: f32 = 0.5;
/// Per-channel standard deviation of the embedded model's normalisation.
pub const STD: f32 = 0.5;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// A problem with a data file, always naming it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    // The io errors are in the message, not `source`s: `{:#}` chains would print them twice.
    /// A data file is missing or unreadable.
    #[error("{path}: {cause} (install the Debian package `dataset-fashion-mnist` or pass --data)")]
    Missing {
        /// The file.
        path: PathBuf,
        /// Why it failed.
        cause: std::io::Error,
    },
    /// A data file could not be decompressed.
    #[error("{path}: cannot read (corrupt gzip?): {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why it failed.
        cause: std::io::Error,
    },
    /// The file is not an IDX file of the expected element type and rank.
    #[error("{path}: bad IDX magic number {got:#010x}, expected {expected:#010x}")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number read.
        got: u32,
        /// The magic number of the expected element type and rank.
        expected: u32,
    },
    /// The file ends before the data its header announces.
    #[error("{path}: truncated: {got} bytes after decompression, the header announces {expected}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes after decompression.
        got: usize,
        /// Bytes the header announces.
        expected: usize,
    },
    /// Images and labels disagree (counts, sizes, label range).
    #[error("{path}: {msg}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Exporting PNGs or the class list failed.
    #[error("{path}: {msg}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why it failed.
        msg: String,
    },
}

/// Which half of the data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// 60,000 images.
    Train,
    /// 10,000 images.
    Test,
}

impl Split {
    /// (images, labels) file names.
    pub fn files(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
            Split::Test => ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
        }
    }
}

/// One split: `images` is (len, 28, 28) row-major u8, `labels` in 0..10.
#[derive(Clone, Debug)]
pub struct FashionMnist {
    /// `len() * 784` pixel values, image by image.
    pub images: Vec<u8>,
    /// Class of each image, in 0..10.
    pub labels: Vec<u8>,
}

/// Reads a gzipped IDX file: its dimensions and its data, checked against each other.
fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let file = std::fs::File::open(path).map_err(|cause| DataError::Missing {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut bytes = Vec::new();
    GzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut bytes)
        .map_err(|cause| DataError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
    let rank = (magic & 0xff) as usize;
    let header = 4 + 4 * rank;
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            got: bytes.len(),
            expected: header,
        });
    }
    if word(0) != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            got: word(0),
            expected: magic,
        });
    }
    if bytes.len() < header {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            got: bytes.len(),
            expected: header,
        });
    }
    let dims: Vec<usize> = (1..=rank).map(|i| word(i) as usize).collect();
    let expected = header + dims.iter().product::<usize>();
    if bytes.len() < expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            got: bytes.len(),
            expected,
        });
    }
    if bytes.len() > expected {
        return Err(DataError::Inconsistent {
            path: path.to_path_buf(),
            msg: format!(
                "{} bytes after the {:?} items the header announces",
                bytes.len() - expected,
                dims
            ),
        });
    }
    bytes.drain(..header);
    Ok((dims, bytes))
}

impl FashionMnist {
    /// Loads one split from `dir` (the folder holding the four `.gz` files).
    pub fn load(dir: &Path, split: Split) -> Result<Self, DataError> {
        let (img_name, lab_name) = split.files();
        let (img_path, lab_path) = (dir.join(img_name), dir.join(lab_name));
        let (dims, images) = read_idx(&img_path, IMAGES_MAGIC)?;
        if dims[1..] != [SIDE, SIDE] {
            return Err(DataError::Inconsistent {
                path: img_path,
                msg: format!("images of {}x{}, expected {SIDE}x{SIDE}", dims[1], dims[2]),
            });
        }
        let (ldims, labels) = read_idx(&lab_path, LABELS_MAGIC)?;
        if ldims[0] != dims[0] {
            return Err(DataError::Inconsistent {
                path: lab_path,
                msg: format!(
                    "{} labels for the {} images of {}",
                    ldims[0],
                    dims[0],
                    img_path.display()
                ),
            });
        }
        if let Some(i) = labels.iter().position(|&l| l as usize >= CLASS_NAMES.len()) {
            return Err(DataError::Inconsistent {
                path: lab_path,
                msg: format!("label {} of item {i} is not a class (0..10)", labels[i]),
            });
        }
        Ok(FashionMnist { images, labels })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 784 pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// The first `n` items (all when `n` is larger).
    pub fn truncate(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.images.truncate(n * PIXELS);
        self.labels.truncate(n);
        self
    }

    /// Normalised images `indices` as (R, 3, 28, 28) f32, gray replicated to RGB.
    pub fn batch(&self, indices: &[usize], device: &Device) -> candle_core::Result<Tensor> {
        let mut buf = Vec::with_capacity(indices.len() * 3 * PIXELS);
        for &i in indices {
            let img: Vec<f32> = self.image(i).iter().map(|&v| normalize(v)).collect();
            for _ in 0..3 {
                buf.extend_from_slice(&img);
            }
        }
        Tensor::from_vec(buf, (indices.len(), 3, SIDE, SIDE), device)
    }
}

/// What an 8-bit PNG pixel becomes after ToTensor and Normalize(0.5, 0.5), computed in the same
/// f32 steps so that IDX pixels and the exported PNGs give identical inputs.
pub fn normalize(v: u8) -> f32 {
    (v as f32 / 255.0 - MEAN) / STD
}

/// Folder-friendly class name: `T-shirt/top` -> `t-shirt-top`, `Ankle boot` -> `ankle-boot`.
pub fn class_slug(class: usize) -> String {
    let lower = CLASS_NAMES[class].to_lowercase();
    let parts: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .collect();
    parts.join("-")
}

/// The first `per_class` images of each class as 8-bit grayscale PNGs, with the paths they go
/// to: `out/<two-digit class>-<slug>/test-<5-digit index>.png` (the index into `data`).
pub fn sample_pngs(
    data: &FashionMnist,
    out: &Path,
    per_class: usize,
) -> Result<Vec<(PathBuf, Vec<u8>)>, DataError> {
    let mut pngs = Vec::new();
    for class in 0..CLASS_NAMES.len() {
        let dir = out.join(format!("{class:02}-{}", class_slug(class)));
        let indices = (0..data.len())
            .filter(|&i| data.labels[i] as usize == class)
            .take(per_class);
        for i in indices {
            let path = dir.join(format!("test-{i:05}.png"));
            let img = image::GrayImage::from_raw(SIDE as u32, SIDE as u32, data.image(i).to_vec())
                .expect("784 pixels");
            let mut png = std::io::Cursor::new(Vec::new());
            img.write_to(&mut png, image::ImageFormat::Png)
                .map_err(|e| DataError::Write {
                    path: path.clone(),
                    msg: e.to_string(),
                })?;
            pngs.push((path, png.into_inner()));
        }
    }
    Ok(pngs)
}

/// Writes each file (atomically), making its folder first.
pub fn write_files(files: &[(PathBuf, Vec<u8>)]) -> Result<(), DataError> {
    let write_err = |path: &Path, e: &dyn std::fmt::Display| DataError::Write {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    for (path, bytes) in files {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| write_err(dir, &e))?;
        }
        crate::output::write_atomic(path, bytes).map_err(|e| write_err(path, &e))?;
    }
    Ok(())
}

/// Writes [`sample_pngs`] into `out`. Returns the paths written.
pub fn export_samples(
    data: &FashionMnist,
    out: &Path,
    per_class: usize,
) -> Result<Vec<PathBuf>, DataError> {
    let pngs = sample_pngs(data, out, per_class)?;
    write_files(&pngs)?;
    Ok(pngs.into_iter().map(|(p, _)| p).collect())
}

/// The class names as a JSON array, in label order (the text of `classes.json`).
pub fn class_names_json() -> String {
    serde_json::to_string_pretty(&CLASS_NAMES).expect("strings serialise") + "\n"
}
