//! What commands set up before computing: the model a command loads ([`ModelSpec`], the library
//! side of `--model` and its options) and, for experiments over a results file, the run's own
//! model and inputs again ([`reopen`]).
use crate::embedded;
use crate::io::inputs::InputError;
use crate::io::inputs::{gather_named, Inputs, Item, Preprocess};
use crate::io::preprocess::Normalization;
use crate::io::results::{ModelInfo, Precision, Results};
use crate::limits::Limits;
use crate::model::load::Loaded;
use crate::model::ModelError;
use crate::model::{load_model, Gelu, LoadOptions};
use candle_core::Device;
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a model or a run's inputs could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("no CUDA device (build with --features cuda)")]
    /// `--cuda` without a CUDA device (or in a build without the `cuda` feature).
    NoCuda(#[source] candle_core::Error),
    #[error(transparent)]
    /// The checkpoint cannot be loaded.
    Model(#[from] ModelError),
    #[error("{model}: unsupported normalisation {mean_std:?}; pass --normalize")]
    /// The checkpoint records a mean/std that is no known normalisation.
    Normalization {
        /// The model's name.
        model: String,
        /// The recorded mean and std.
        mean_std: [[f64; 3]; 2],
    },
    #[error(transparent)]
    /// The inputs cannot be gathered.
    Inputs(#[from] InputError),
    #[error("no input images (the embedded samples only go with the embedded model)")]
    /// A checkpoint given without input images (the embedded samples go with the embedded model only).
    NoInputs,
    #[error("{}: cannot read", path.display())]
    /// A checkpoint file that cannot be read (to hash it).
    Read {
        /// The file.
        path: PathBuf,
        #[source]
        /// The I/O error.
        source: std::io::Error,
    },
    /// The results name a checkpoint that is not there.
    #[error("the results were computed with {0}, which is not there; pass --model")]
    ModelMissing(String),
    /// The checkpoint loaded is not the one the results were computed with.
    #[error("{0}")]
    OtherModel(String),
    /// The results header's inputs cannot be read back.
    #[error("results header: {0}")]
    Header(String),
    #[error("cannot gather the run's inputs again (run from the folder discover ran in)")]
    /// The recorded inputs cannot be gathered again.
    Regather(#[source] InputError),
    /// The inputs found again differ from the recorded ones.
    #[error("the inputs changed: {0}")]
    InputsChanged(String),
    #[error(transparent)]
    /// A header value cannot be serialised.
    Json(#[from] serde_json::Error),
}

impl SetupError {
    fn read(path: &Path, source: std::io::Error) -> Self {
        SetupError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What setting up returns.
pub type Result<T, E = SetupError> = std::result::Result<T, E>;

/// Which checkpoint to load and how; `None` fields are what the checkpoint records.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// The checkpoint; `None`: the embedded Fashion-MNIST ViT.
    pub path: Option<PathBuf>,
    /// Input normalisation (default: the checkpoint's, else ImageNet).
    pub normalize: Option<Normalization>,
    /// Element type of the computation.
    pub dtype: Precision,
    /// Run at this image size (the position-embedding grid is resized).
    pub image_size: Option<usize>,
    /// Attention heads, for layouts that do not record them.
    pub heads: Option<usize>,
    /// GELU flavour.
    pub gelu: Option<Gelu>,
    /// LayerNorm epsilon.
    pub ln_eps: Option<f64>,
    /// Run on the first CUDA GPU.
    pub cuda: bool,
    /// Caps on what reading the checkpoint may allocate (the binary reads them from the
    /// environment; the library never does).
    pub limits: Limits,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            path: None,
            normalize: None,
            dtype: Precision::F32,
            image_size: None,
            heads: None,
            gelu: None,
            ln_eps: None,
            cuda: false,
            limits: Limits::default(),
        }
    }
}

impl ModelSpec {
    /// The loader's options (`double_fc_norm`: the authors' MAE quirk, `--compat`). On a GPU
    /// this also sets cuBLAS's process-wide TF32 switch for f32 GEMMs to this spec's precision
    /// (on for [`Precision::Tf32`], off otherwise), so the last model set up decides it.
    pub fn options(&self, double_fc_norm: bool) -> Result<LoadOptions> {
        let device = if self.cuda {
            let device = Device::new_cuda(0).map_err(SetupError::NoCuda)?;
            candle_core::cuda::set_gemm_reduced_precision_f32(self.dtype.tf32_gemm());
            device
        } else {
            Device::Cpu
        };
        Ok(LoadOptions {
            dtype: self.dtype.dtype(),
            device,
            image_size: self.image_size,
            heads: self.heads,
            gelu: self.gelu,
            ln_eps: self.ln_eps,
            double_fc_norm,
            limits: self.limits,
        })
    }

    /// Loads the checkpoint, or the embedded model when there is no path.
    pub fn load(&self, double_fc_norm: bool) -> Result<Loaded> {
        let opts = self.options(double_fc_norm)?;
        Ok(match &self.path {
            Some(p) => load_model(p, &opts)?,
            None => embedded::model(&opts)?,
        })
    }

    /// The model's name in outputs.
    pub fn name(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => embedded::MODEL_NAME.to_string(),
        }
    }

    /// The preprocessing the model expects: its recorded normalisation unless overridden.
    pub fn preprocess(&self, loaded: &Loaded) -> Result<Preprocess> {
        let norm = match (self.normalize, loaded.normalization) {
            (Some(n), _) => n,
            (None, Some(ms)) => {
                Normalization::from_mean_std(ms).ok_or_else(|| SetupError::Normalization {
                    model: self.name(),
                    mean_std: ms,
                })?
            }
            (None, None) => Normalization::ImageNet,
        };
        Ok(Preprocess {
            size: loaded.model.cfg.image_size,
            norm,
        })
    }

    /// The inputs named on the command line, or the embedded samples for the embedded model;
    /// labels given by class name are resolved against `loaded`'s class names.
    pub fn inputs(
        &self,
        loaded: &Loaded,
        paths: &[PathBuf],
        labels: Option<&Path>,
    ) -> Result<Inputs> {
        if !paths.is_empty() {
            return Ok(gather_named(paths, labels, loaded.class_names.as_deref())?);
        }
        if self.path.is_some() {
            return Err(SetupError::NoInputs);
        }
        Ok(embedded::samples())
    }

    /// Path (exact, even when not UTF-8), content hash, layout and detected configuration, for
    /// result headers.
    pub fn describe(&self, loaded: &Loaded) -> Result<ModelInfo> {
        let (path, path_hex) = match &self.path {
            Some(p) => ModelInfo::path_fields(p),
            None => (self.name(), None),
        };
        Ok(ModelInfo {
            path,
            path_hex,
            sha256: Some(self.hash()?),
            layout: serde_json::to_value(loaded.layout)?
                .as_str()
                .map(String::from),
            config: loaded.model.cfg.clone(),
        })
    }

    /// SHA-256 of the checkpoint's bytes: the files it is read from, in name order (for a
    /// Hugging Face folder its config, preprocessor config and weights, not a README or another
    /// framework's copy of the weights beside them).
    fn hash(&self) -> Result<String> {
        match &self.path {
            None => Ok(hex_sha(embedded::model_bytes().unwrap_or_default())),
            Some(p) => hash_files(&crate::model::load::checkpoint_files(p)?),
        }
    }

    /// Whether `recorded` is this checkpoint's hash: as hashed now, or for a folder as results
    /// written before the hash covered only the files read (every file of the folder).
    pub fn is_hashed(&self, recorded: &str) -> Result<bool> {
        if self.hash()? == recorded {
            return Ok(true);
        }
        let Some(dir) = self.path.as_ref().filter(|p| p.is_dir()) else {
            return Ok(false);
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| SetupError::read(dir, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        Ok(hash_files(&files)? == recorded)
    }
}

fn hex_sha(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// SHA-256 of the files' bytes one after another, streamed (regular files only).
fn hash_files(files: &[PathBuf]) -> Result<String> {
    let mut h = sha2::Sha256::new();
    for f in files {
        let mut file = crate::limits::open_regular(f).map_err(|e| SetupError::read(f, e))?;
        std::io::copy(&mut file, &mut h).map_err(|e| SetupError::read(f, e))?;
    }
    Ok(format!("{:x}", h.finalize()))
}

/// A results file's model and inputs, checked against its header.
pub struct Reopened {
    /// The run's model.
    pub loaded: Loaded,
    /// Its preprocessing.
    pub pre: Preprocess,
    /// The run's inputs by record index.
    pub items: BTreeMap<u64, Item>,
    /// What the caller should tell the user (a dtype other than the run's, records whose
    /// image is gone).
    pub notes: Vec<String>,
}

/// `args` with what it leaves open taken from the header: model path, heads, LayerNorm eps,
/// image size, GELU, normalisation.
fn resolve(run: &Results, spec: &ModelSpec) -> Result<ModelSpec> {
    let mut a = spec.clone();
    let h = &run.header;
    let c = &run.config;
    if a.path.is_none() && h.model.path != embedded::MODEL_NAME {
        let recorded = h.model.to_path().map_err(SetupError::Header)?;
        if !recorded.exists() {
            return Err(SetupError::ModelMissing(h.model.path.clone()));
        }
        a.path = Some(recorded);
    }
    a.heads = a.heads.or(Some(c.heads));
    a.ln_eps = a.ln_eps.or(Some(c.ln_eps));
    a.image_size = a.image_size.or(Some(c.image_size));
    a.gelu = a.gelu.or(Some(c.gelu));
    a.normalize = a.normalize.or(Some(h.preprocessing.normalization));
    Ok(a)
}

/// Loads the run's model (refusing another one) and gathers its inputs again; what `spec`
/// leaves open comes from the header. Records whose image is gone are dropped from `run`
/// (with a note), so every experiment after this sees the same images.
pub fn reopen(run: &mut Results, spec: &ModelSpec) -> Result<Reopened> {
    let a = resolve(run, spec)?;
    let compat = run.header.compat;
    let mut loaded = a.load(compat)?;
    // The experiments measure the F the run attributed.
    loaded.model.objective = run.header.objective.clone();
    let desc = a.describe(&loaded)?;
    if let Some(want) = run.model_sha() {
        if desc.sha256.as_deref() != Some(want) && !a.is_hashed(want)? {
            return Err(SetupError::OtherModel(format!(
                "{} (sha256 {}) is not the model of these results ({} with sha256 {want}); pass the same --model as discover",
                a.name(),
                desc.sha256.as_deref().unwrap_or("?"),
                run.header.model.path
            )));
        }
    }
    if desc.config != run.header.model.config {
        let (got, want) = (
            serde_json::to_value(&desc.config)?,
            serde_json::to_value(&run.header.model.config)?,
        );
        let key = want
            .as_object()
            .and_then(|o| o.keys().find(|k| got[k.as_str()] != o[k.as_str()]).cloned())
            .unwrap_or_else(|| "config".into());
        return Err(SetupError::OtherModel(format!(
            "{}: loaded with {key} = {} but the results used {}; pass the same options as discover",
            a.name(),
            got[&key],
            want[&key]
        )));
    }
    let (recorded_dtype, dtype) = (run.header.dtype, a.dtype);
    let mut notes = Vec::new();
    if recorded_dtype != dtype {
        notes.push(format!("the results were computed in {recorded_dtype}, this run uses {dtype} (pass --dtype {recorded_dtype} to reproduce them exactly)"));
    }
    let pre = a.preprocess(&loaded)?;
    let found = run_inputs(run)?;
    notes.extend(found.gone_note());
    let gone: std::collections::BTreeSet<u64> = found.gone.iter().map(|(i, _)| *i).collect();
    run.images.retain(|r| !gone.contains(&r.index));
    let items = found.items;
    Ok(Reopened {
        loaded,
        pre,
        items,
        notes,
    })
}

/// The run's inputs found again: the images by record index, and the records whose image is
/// no longer among the inputs.
pub struct RunInputs {
    /// The run's inputs by record index.
    pub items: BTreeMap<u64, Item>,
    /// (index, source) of the successful records whose image is gone (deleted or moved away).
    pub gone: Vec<(u64, String)>,
}

impl RunInputs {
    /// One line for the user when some records' images are gone.
    pub fn gone_note(&self) -> Option<String> {
        let (index, source) = self.gone.first()?;
        Some(format!(
            "{} recorded image(s) are no longer among the inputs (first: image {index}, {source}): \
             left out of the experiments; restore them to include them",
            self.gone.len()
        ))
    }
}

/// The run's inputs by record index, gathered again from the header and matched to the records
/// by identity (path below the input and row; by source for records written before identities).
/// Each matched image carries its recorded content hash, checked when it is loaded, so a file
/// changed since discover is an error naming it rather than a silently different image. A
/// record whose image is gone is listed in `gone` (a dataset pruned after discover); an error
/// when no record's image is found (the inputs moved or were replaced).
pub fn run_inputs(run: &Results) -> Result<RunInputs> {
    let recorded = &run.header.inputs;
    let inputs: Inputs = if recorded.is_embedded() {
        embedded::samples()
    } else {
        let p: Vec<PathBuf> = recorded.to_paths().map_err(SetupError::Header)?;
        gather_named(
            &p,
            recorded
                .labels_path()
                .map_err(SetupError::Header)?
                .as_deref(),
            run.header.class_names.as_deref(),
        )
        .map_err(SetupError::Regather)?
    };
    let mut by_place: BTreeMap<(Vec<u8>, Option<u64>), Vec<usize>> = BTreeMap::new();
    let mut by_source: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, it) in inputs.items.iter().enumerate() {
        by_place
            .entry(it.identity(None).place())
            .or_default()
            .push(i);
        by_source.entry(it.source.as_str()).or_default().push(i);
    }
    let mut taken = vec![false; inputs.items.len()];
    let mut found = RunInputs {
        items: BTreeMap::new(),
        gone: Vec::new(),
    };
    for r in &run.images {
        let list = match &r.image {
            Some(id) => by_place.get(&id.place()),
            None => by_source.get(r.source.as_str()),
        };
        let Some(i) = list.and_then(|l| l.iter().copied().find(|&i| !taken[i])) else {
            found.gone.push((r.index, r.source.clone()));
            continue;
        };
        taken[i] = true;
        let mut it = inputs.items[i].clone();
        it.index = r.index;
        it.sha256 = r.image.as_ref().and_then(|id| id.sha256.clone());
        found.items.insert(r.index, it);
    }
    if found.items.is_empty() {
        if let Some((index, source)) = found.gone.first() {
            return Err(SetupError::InputsChanged(format!(
                "none of the {} recorded images is among the inputs (first: image {index}, {source} is missing); \
                 restore the inputs discover read",
                found.gone.len()
            )));
        }
    }
    Ok(found)
}

/// The preprocessing recorded in the header (for thumbnails without a model).
pub fn recorded_preprocess(run: &Results) -> Preprocess {
    let p = &run.header.preprocessing;
    Preprocess {
        size: p.size,
        norm: p.normalization,
    }
}
