//! The types of a results file: one [`Header`] line describing the run, then one [`Record`] line
//! per image. The JSON field names are the file format; every type here round-trips through
//! serde unchanged, and fields a newer minor version adds are kept (`extra`) rather than lost.
use crate::io::preprocess::Normalization;
use crate::io::shard::Shard;
use crate::model::{Rows, VitConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Fields a newer minor version wrote that this version does not know, kept as they were.
pub type Extra = BTreeMap<String, Value>;

/// `major.minor` of the results format. A reader refuses another major; a newer minor only
/// adds fields, which are kept in `extra` and written back unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SchemaVersion {
    /// Incompatible changes.
    pub major: u32,
    /// Added fields only.
    pub minor: u32,
}

impl SchemaVersion {
    /// What this version of neuronpath writes (and what a header without `schema` is).
    pub const CURRENT: SchemaVersion = SchemaVersion { major: 1, minor: 2 };

    /// The first version whose records carry their image's identity ([`ImageId`]).
    pub const IDENTITY: SchemaVersion = SchemaVersion { major: 1, minor: 2 };
}

impl Default for SchemaVersion {
    fn default() -> Self {
        SchemaVersion::CURRENT
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl std::str::FromStr for SchemaVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("schema `{s}` is not MAJOR.MINOR");
        let (a, b) = s.split_once('.').ok_or_else(bad)?;
        Ok(SchemaVersion {
            major: a.parse().map_err(|_| bad())?,
            minor: b.parse().map_err(|_| bad())?,
        })
    }
}

impl TryFrom<String> for SchemaVersion {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<SchemaVersion> for String {
    fn from(v: SchemaVersion) -> String {
        v.to_string()
    }
}

/// The path-finding methods. Their order here is the display order everywhere (the paper's
/// method first, controls last); name and colour come from [`Method::name`] and
/// [`Method::colour`], so a new method is one arm here plus its function in `attribution`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The paper's layer-progressive neuron path (JAS search).
    Path,
    /// Largest clean activation per layer.
    Activation,
    /// Influence pattern: mean total derivative along the input path alpha * x.
    Influence,
    /// Per-layer integrated gradients (Knowledge Neurons), no path.
    Ig,
    /// Uniformly random neurons, seeded.
    Random,
}

impl Method {
    /// Every method, in display order.
    pub const ALL: [Method; 5] = [
        Method::Path,
        Method::Activation,
        Method::Influence,
        Method::Ig,
        Method::Random,
    ];

    /// The name in files, tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::Path => "path",
            Method::Activation => "activation",
            Method::Influence => "influence",
            Method::Ig => "ig",
            Method::Random => "random",
        }
    }

    /// Its colour in every figure.
    pub fn colour(self) -> &'static str {
        match self {
            Method::Path => "#d62728",
            Method::Activation => "#1f77b4",
            Method::Influence => "#2ca02c",
            Method::Ig => "#9467bd",
            Method::Random => "#7f7f7f",
        }
    }

    /// A control rather than an attribution method (drawn and compared as one).
    pub fn is_control(self) -> bool {
        self == Method::Random
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                format!("unknown method `{s}` (known: {})", names.join(", "))
            })
    }
}

/// Which class F scores (`label`, `predicted` or `class:N` on the command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// The ground-truth label.
    Label,
    /// The model's top-1 prediction on the clean image.
    Predicted,
    /// The same class for every image.
    Class(usize),
}

impl std::str::FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "label" => Ok(TargetKind::Label),
            "predicted" => Ok(TargetKind::Predicted),
            _ => s
                .strip_prefix("class:")
                .and_then(|n| n.parse().ok())
                .map(TargetKind::Class)
                .ok_or_else(|| format!("`{s}`: expected label, predicted or class:N")),
        }
    }
}

impl std::fmt::Display for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetKind::Label => write!(f, "label"),
            TargetKind::Predicted => write!(f, "predicted"),
            TargetKind::Class(n) => write!(f, "class:{n}"),
        }
    }
}

/// Element type of the computation (`--dtype`, alias `--precision`): f32 and f64 everywhere, the
/// reduced-precision modes on a CUDA GPU only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats.
    F32,
    /// 64-bit floats (what the golden tests use).
    F64,
    /// f32 tensors whose matrix products run on the GPU's TF32 tensor cores (10-bit mantissa
    /// inputs, f32 accumulation): cuBLAS's reduced-precision f32 GEMM. CUDA only.
    Tf32,
    /// bfloat16 weights and activations (8-bit mantissa) through the device-generic block. CUDA
    /// only.
    Bf16,
}

impl Precision {
    /// The candle element type of the tensors (f32 for TF32: only the GEMMs differ).
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::F32 | Precision::Tf32 => candle_core::DType::F32,
            Precision::F64 => candle_core::DType::F64,
            Precision::Bf16 => candle_core::DType::BF16,
        }
    }

    /// Whether this mode trades accuracy for speed on a GPU (TF32, bf16): opt-in, CUDA only.
    pub fn reduced(self) -> bool {
        matches!(self, Precision::Tf32 | Precision::Bf16)
    }

    /// Whether the f32 matrix products may use TF32 (cuBLAS's reduced-precision f32 GEMM).
    pub fn tf32_gemm(self) -> bool {
        self == Precision::Tf32
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// Both forms of the JAS of one image's neuron set (SPEC section 5).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Jas {
    /// `(1/m) (sum_l A_l[p_l]) (sum_k sum_l g_lk[p_l])`, what the paper reports.
    pub reference: f64,
    /// `(1/m) sum_l A_l[p_l] sum_k g_lk[p_l]`: integrated gradients over the neuron set.
    pub additive: f64,
    /// F(clamped, alpha=1) - F(clamped, path zeroed) - additive: how far the Riemann sum is from
    /// completeness (alpha = 1 is the clean pass).
    pub delta: f64,
}

/// One neuron set per layer, `[layer][rank]` (rank 0 is the best).
pub type NeuronSets = Vec<Vec<usize>>;

/// One method's result for one image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MethodResult {
    /// Top-1 neuron per layer.
    pub path: Vec<usize>,
    /// All K neurons per layer, when K > 1.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sets: Option<NeuronSets>,
    /// JAS of the neuron set, both forms.
    pub jas: Jas,
    /// F with the set's neurons zeroed.
    pub prob_removed: f64,
    /// F with the set's neurons doubled.
    pub prob_enhanced: f64,
    /// Search only: per layer, best minus runner-up candidate score.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub margins: Option<Vec<f64>>,
    /// The path's neurons by the checkpoint's own module names, layer by layer (schema 1.1;
    /// absent in older files), so that a path maps back to the user's model.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub neurons: Option<Vec<NeuronName>>,
}

/// A neuron named as in the checkpoint: unit `unit` of the output of module `module` (e.g.
/// `blocks.3.mlp.act` unit 1207 in timm, `vit.encoder.layer.3.intermediate` unit 1207 in
/// Hugging Face files).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NeuronName {
    /// The module whose output holds the layer's MLP neurons (after the activation).
    pub module: String,
    /// The neuron's index in that output's last dimension.
    pub unit: usize,
}

impl MethodResult {
    /// Sets [`MethodResult::neurons`] from the path and each layer's module name.
    pub fn name_neurons(&mut self, modules: &[String]) {
        self.neurons = Some(
            self.path
                .iter()
                .zip(modules)
                .map(|(&unit, module)| NeuronName {
                    module: module.clone(),
                    unit,
                })
                .collect(),
        );
    }

    /// The neuron sets `[layer][rank]`: all K when the run kept them and `all_k`, else the path.
    pub fn neuron_sets(&self, all_k: bool) -> NeuronSets {
        match (&self.sets, all_k) {
            (Some(s), true) => s.clone(),
            _ => self.path.iter().map(|&j| vec![j]).collect(),
        }
    }
}

/// Everything `discover` finds for one image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ImageResult {
    /// Ground-truth class, when known.
    pub label: Option<usize>,
    /// The class whose probability F is attributed.
    pub target: usize,
    /// Clean top-1 class.
    pub prediction: usize,
    /// Clean F.
    pub prob_target: f64,
    /// Clean probability of the prediction.
    pub prob_prediction: f64,
    /// Each requested method's result.
    pub methods: BTreeMap<Method, MethodResult>,
}

impl ImageResult {
    /// Names every method's path neurons by the checkpoint's modules (one name per layer).
    pub fn name_neurons(&mut self, modules: &[String]) {
        for m in self.methods.values_mut() {
            m.name_neurons(modules);
        }
    }
}

/// The checkpoint a run used.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    /// As given on the command line, or the embedded model's name (lossy when not UTF-8).
    pub path: String,
    /// When the path is not UTF-8: its bytes in hex, so that later commands find the same
    /// checkpoint (schema 1.2; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path_hex: Option<String>,
    /// SHA-256 of the checkpoint's bytes (every file of a folder, in name order).
    #[serde(default)]
    pub sha256: Option<String>,
    /// The checkpoint layout it was read as.
    #[serde(default)]
    pub layout: Option<String>,
    /// The detected (and overridden) architecture.
    pub config: VitConfig,
}

impl ModelInfo {
    /// `path` and `path_hex` of a checkpoint path: exact when it is not UTF-8.
    pub fn path_fields(path: &std::path::Path) -> (String, Option<String>) {
        let hex = path
            .to_str()
            .is_none()
            .then(|| super::os_path::to_hex(path));
        (path.display().to_string(), hex)
    }

    /// The checkpoint's path, exactly (from `path_hex` when present).
    pub fn to_path(&self) -> Result<PathBuf, String> {
        match &self.path_hex {
            Some(h) => super::os_path::from_hex(h),
            None => Ok(PathBuf::from(&self.path)),
        }
    }
}

/// How images became model inputs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Preprocessing {
    /// Side of the square input, in pixels.
    pub size: usize,
    /// Resampling (always `pil-bilinear` today).
    #[serde(default = "pil_bilinear")]
    pub resize: String,
    /// Per-channel normalisation.
    pub normalization: Normalization,
}

fn pil_bilinear() -> String {
    "pil-bilinear".into()
}

/// Which images a run covers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InputsInfo {
    /// The paths given to discover, or `[EMBEDDED]` for the embedded samples.
    pub paths: Vec<String>,
    /// The `--labels` file, if any (written lossily when not UTF-8: see `labels_hex`).
    #[serde(default, serialize_with = "lossy_path")]
    pub labels: Option<PathBuf>,
    /// Images in the run (all shards together).
    #[serde(default)]
    pub count: usize,
    /// `--per-class`, if given.
    #[serde(default)]
    pub per_class: Option<usize>,
    /// When a path is not UTF-8 (`paths` then shows it lossily): every path's bytes in hex, so
    /// that later commands find the same files (schema 1.1; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub paths_hex: Option<Vec<String>>,
    /// When the `--labels` path is not UTF-8: its bytes in hex (schema 1.2; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub labels_hex: Option<String>,
}

/// A path as a JSON string, lossily when it is not UTF-8 (its exact bytes go beside it in hex).
fn lossy_path<S: serde::Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    p.as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .serialize(s)
}

impl InputsInfo {
    /// `paths` of a run on the embedded sample images.
    pub const EMBEDDED: &'static str = "embedded:fashion-mnist-samples";

    /// The paths as given: lossless when one is not UTF-8.
    pub fn from_paths(paths: &[PathBuf]) -> (Vec<String>, Option<Vec<String>>) {
        let shown = paths.iter().map(|p| p.display().to_string()).collect();
        let exact = paths.iter().all(|p| p.to_str().is_some());
        let hex = (!exact).then(|| paths.iter().map(|p| super::os_path::to_hex(p)).collect());
        (shown, hex)
    }

    /// The paths given to discover, exactly (from `paths_hex` when present).
    pub fn to_paths(&self) -> Result<Vec<PathBuf>, String> {
        match &self.paths_hex {
            Some(hex) => hex.iter().map(|h| super::os_path::from_hex(h)).collect(),
            None => Ok(self.paths.iter().map(PathBuf::from).collect()),
        }
    }

    /// `labels_hex` of a `--labels` path: its bytes when it is not UTF-8.
    pub fn labels_hex(labels: Option<&std::path::Path>) -> Option<String> {
        labels
            .filter(|p| p.to_str().is_none())
            .map(super::os_path::to_hex)
    }

    /// The `--labels` file, exactly (from `labels_hex` when present).
    pub fn labels_path(&self) -> Result<Option<PathBuf>, String> {
        match &self.labels_hex {
            Some(h) => super::os_path::from_hex(h).map(Some),
            None => Ok(self.labels.clone()),
        }
    }

    /// Whether the run used the embedded samples.
    pub fn is_embedded(&self) -> bool {
        self.paths.len() == 1 && self.paths[0] == Self::EMBEDDED
    }
}

/// The first line of a results file: everything needed to reproduce, resume or merge the run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Header {
    /// Format version (absent in files written before it existed: read as the current one).
    #[serde(default)]
    pub schema: SchemaVersion,
    /// Always `neuronpath`.
    #[serde(default = "tool_name")]
    pub tool: String,
    /// The writing neuronpath's version.
    #[serde(default)]
    pub tool_version: String,
    /// Unix time the file was created.
    #[serde(default)]
    pub created: u64,
    /// The checkpoint.
    pub model: ModelInfo,
    /// How images became inputs.
    pub preprocessing: Preprocessing,
    /// Which images.
    pub inputs: InputsInfo,
    /// One name per class, when the inputs or the checkpoint name them.
    #[serde(default)]
    pub class_names: Option<Vec<String>>,
    /// Riemann steps m.
    pub steps: usize,
    /// Riemann rule (`left`: alpha_k = k/m, k = 0..m-1).
    #[serde(default = "left")]
    pub riemann: String,
    /// Neurons kept per layer (K).
    #[serde(default = "one")]
    pub top_k: usize,
    /// Which class F is the probability of.
    pub target: TargetKind,
    /// What F is (absent in files written before objectives existed: the probability).
    #[serde(default)]
    pub objective: crate::model::Objective,
    /// JAS forms recorded.
    #[serde(default = "forms")]
    pub forms: Vec<String>,
    /// The JAS form the report uses.
    #[serde(default = "reference")]
    pub jas_default: String,
    /// CLS row (ViT) or patch rows (MAE variant).
    #[serde(default = "cls")]
    pub neurons: Rows,
    /// Element type of the computation.
    pub dtype: Precision,
    /// Seed of the random baseline.
    #[serde(default)]
    pub seed: u64,
    /// The authors' quirks were reproduced (`--compat`).
    #[serde(default)]
    pub compat: bool,
    /// Methods run, in display order.
    pub methods: Vec<Method>,
    /// The slice of the inputs this file holds (none: all, or merged).
    #[serde(default)]
    pub shard: Option<Shard>,
    /// Fields of a newer minor version, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

fn tool_name() -> String {
    "neuronpath".into()
}
fn left() -> String {
    "left".into()
}
fn one() -> usize {
    1
}
fn forms() -> Vec<String> {
    vec!["reference".into(), "additive".into()]
}
fn reference() -> String {
    "reference".into()
}
fn cls() -> Rows {
    Rows::Cls
}

impl Header {
    /// Header fields that may differ between files of the same run (shards, resumed runs).
    const VOLATILE: [&'static str; 4] = ["shard", "created", "tool_version", "schema"];

    /// The part that must match for results to be combined, as JSON.
    pub fn run_config(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(o) = v.as_object_mut() {
            for k in Self::VOLATILE {
                o.remove(k);
            }
            // Files added to or removed from an input folder change the count, not the run:
            // records are matched to images by identity.
            if let Some(i) = o.get_mut("inputs").and_then(Value::as_object_mut) {
                i.remove("count");
            }
        }
        v
    }

    /// Whether results of `other` can be combined with these.
    pub fn same_run(&self, other: &Header) -> bool {
        self.run_config() == other.run_config()
    }

    /// First differing field of two configurations, for error messages, nested fields by their
    /// dotted path and long values around where they differ:
    /// `` `seed` (0 vs 5) ``, `` `model.path` ("...models/a.npz" vs "...models/b.npz") ``.
    pub fn first_difference(&self, other: &Header) -> String {
        let (a, b) = (self.run_config(), other.run_config());
        match first_diff(Some(&a), Some(&b), "") {
            Some((key, x, y)) => {
                let (x, y) = shown_apart(x, y);
                format!("`{key}` ({x} vs {y})")
            }
            None => "header".into(),
        }
    }

    /// The name of class `c`: the recorded one, else `class {c}`.
    pub fn class_name(&self, c: usize) -> String {
        self.class_names
            .as_ref()
            .and_then(|n| n.get(c))
            .cloned()
            .unwrap_or_else(|| format!("class {c}"))
    }
}

/// The first leaf where `a` and `b` differ: its dotted path and both values.
fn first_diff<'v>(
    a: Option<&'v Value>,
    b: Option<&'v Value>,
    at: &str,
) -> Option<(String, Option<&'v Value>, Option<&'v Value>)> {
    if a == b {
        return None;
    }
    let join = |k: &str| match at {
        "" => k.to_string(),
        _ => format!("{at}.{k}"),
    };
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter()
                .find_map(|k| first_diff(x.get(k), y.get(k), &join(k)))
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_diff(Some(p), Some(q), &format!("{at}[{i}]"))),
        _ => Some((at.to_string(), a, b)),
    }
}

/// Two differing values as text, each at most about 80 characters, cut so that where they
/// differ shows (a common prefix is elided from both).
fn shown_apart(a: Option<&Value>, b: Option<&Value>) -> (String, String) {
    let text = |v: Option<&Value>| v.map(|v| v.to_string()).unwrap_or_else(|| "absent".into());
    let (a, b) = (text(a), text(b));
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let skip = common.saturating_sub(20);
    let cut = |s: &str| {
        let rest: String = s.chars().skip(skip).collect();
        let mut out: String = rest.chars().take(80).collect();
        if rest.chars().count() > 80 {
            out.push_str("...");
        }
        if skip > 0 {
            out.insert_str(0, "...");
        }
        out
    };
    (cut(&a), cut(&b))
}

/// How one image ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The image was attributed.
    Done {
        /// The label's class name, when known.
        label_name: Option<String>,
        /// What discover found.
        result: ImageResult,
    },
    /// The image could not be read or attributed (the run went on without it).
    Failed {
        /// Why, in one line.
        error: String,
    },
}

/// Which image a record is of, whatever its position among the inputs (schema 1.2): the path
/// relative to the input given on the command line, the array's row for an `.npy` of N arrays,
/// and a hash of the bytes read. Renamed, added or reordered files leave it unchanged; a file
/// rewritten with other content changes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct ImageId {
    /// The path below the input given (starting with that input's own name, `data/Coat/a.png`
    /// for `data/`), or the embedded sample's name; lossy when not UTF-8.
    pub path: String,
    /// When the path is not UTF-8: its bytes in hex.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path_hex: Option<String>,
    /// The array's position in an `.npy` file of N arrays.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub row: Option<u64>,
    /// SHA-256 of the file's bytes, or of the array's values (little-endian f32) for an `.npy`
    /// row; absent when the file could not be read.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
}

impl ImageId {
    /// An identity for `path` (exact bytes kept when it is not UTF-8).
    pub fn new(path: &std::path::Path, row: Option<u64>, sha256: Option<String>) -> ImageId {
        let hex = path
            .to_str()
            .is_none()
            .then(|| super::os_path::to_hex(path));
        ImageId {
            path: path.display().to_string(),
            path_hex: hex,
            row,
            sha256,
        }
    }

    /// Where the image is: the path's exact bytes and the row (what a renamed file changes).
    pub fn place(&self) -> (Vec<u8>, Option<u64>) {
        let bytes = match self.path_hex.as_deref().map(super::os_path::from_hex) {
            Some(Ok(p)) => p.into_os_string().into_encoded_bytes(),
            _ => self.path.as_bytes().to_vec(),
        };
        (bytes, self.row)
    }

    /// The first 64 bits of the content hash (seeds the image's random baseline, so that it
    /// does not depend on the image's position).
    pub fn content_key(&self) -> Option<u64> {
        let h = self.sha256.as_deref()?;
        u64::from_str_radix(h.get(..16)?, 16).ok()
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row {
            Some(r) => write!(f, "{}[{r}]", self.path),
            None => f.write_str(&self.path),
        }
    }
}

/// What makes two records the same image's: the identity, or for records written before
/// identities existed, the index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// Exact path bytes, row and content hash.
    Image(Vec<u8>, Option<u64>, Option<String>),
    /// A record without an identity.
    Index(u64),
}

/// One line per image, keyed by `index` (the image's position in the run's inputs).
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Position of the image in the run's inputs (unique within a file).
    pub index: u64,
    /// Where it came from (a path, or `file.npy[row]`).
    pub source: String,
    /// Which image it is (absent in files written before schema 1.2).
    pub image: Option<ImageId>,
    /// Its result or its error.
    pub outcome: Outcome,
    /// Fields of a newer minor version, kept.
    pub extra: Extra,
}

impl Record {
    /// What identifies the record's image (for de-duplication).
    pub fn key(&self) -> RecordKey {
        match &self.image {
            Some(id) => {
                let (path, row) = id.place();
                RecordKey::Image(path, row, id.sha256.clone())
            }
            None => RecordKey::Index(self.index),
        }
    }

    /// The result, unless the image failed.
    pub fn result(&self) -> Option<&ImageResult> {
        match &self.outcome {
            Outcome::Done { result, .. } => Some(result),
            Outcome::Failed { .. } => None,
        }
    }
}

/// JSON of a record: `{"kind": "image", "index", "source", ...result, "label_name"}` or
/// `{"kind": "image", "index", "source", "error"}`.
impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut o = serde_json::Map::new();
        o.insert("kind".into(), "image".into());
        o.insert("index".into(), self.index.into());
        o.insert("source".into(), self.source.clone().into());
        if let Some(id) = &self.image {
            o.insert(
                "image".into(),
                serde_json::to_value(id).map_err(S::Error::custom)?,
            );
        }
        match &self.outcome {
            Outcome::Done { label_name, result } => {
                if let Value::Object(r) = serde_json::to_value(result).map_err(S::Error::custom)? {
                    o.extend(r);
                }
                o.insert("label_name".into(), label_name.clone().into());
            }
            Outcome::Failed { error } => {
                o.insert("error".into(), error.clone().into());
            }
        }
        for (k, v) in &self.extra {
            o.entry(k.clone()).or_insert_with(|| v.clone());
        }
        o.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut o = serde_json::Map::deserialize(d)?;
        match o.remove("kind") {
            Some(Value::String(k)) if k == "image" => {}
            other => {
                return Err(D::Error::custom(format!(
                    "not an image record (kind {})",
                    other.map(|v| v.to_string()).unwrap_or("absent".into())
                )))
            }
        }
        let index = o
            .remove("index")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| D::Error::custom("image record without an integer `index`"))?;
        let source = match o.remove("source") {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let image = match o.remove("image") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value::<ImageId>(v)
                    .map_err(|e| D::Error::custom(format!("`image`: {e}")))?,
            ),
        };
        let outcome = if let Some(e) = o.remove("error") {
            Outcome::Failed {
                error: e
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| e.to_string()),
            }
        } else {
            let label_name = match o.remove("label_name") {
                Some(Value::String(s)) => Some(s),
                _ => None,
            };
            let result: ImageResult =
                serde_json::from_value(Value::Object(o.clone())).map_err(D::Error::custom)?;
            // What the result did not take is a newer version's: keep it.
            if let Value::Object(known) = serde_json::to_value(&result).map_err(D::Error::custom)? {
                o.retain(|k, _| !known.contains_key(k));
            }
            Outcome::Done { label_name, result }
        };
        Ok(Record {
            index,
            source,
            image,
            outcome,
            extra: o.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_versions_parse_and_print() {
        let v: SchemaVersion = "2.13".parse().unwrap();
        assert_eq!((v.major, v.minor), (2, 13));
        assert_eq!(v.to_string(), "2.13");
        for bad in ["2", "a.1", "1.", ".1", "1.2.3"] {
            assert!(bad.parse::<SchemaVersion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn methods_keep_their_names_and_order() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>(), Ok(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
            assert_eq!(
                <Method as clap::ValueEnum>::from_str(m.name(), false),
                Ok(m)
            );
        }
        let mut sorted = Method::ALL;
        sorted.sort();
        assert_eq!(sorted, Method::ALL, "display order is the enum's order");
        let colours: std::collections::BTreeSet<&str> =
            Method::ALL.iter().map(|m| m.colour()).collect();
        assert_eq!(colours.len(), Method::ALL.len(), "one colour per method");
        assert!("nope".parse::<Method>().unwrap_err().contains("path"));
    }

    fn result() -> ImageResult {
        let jas = Jas {
            reference: 0.5,
            additive: 0.25,
            delta: -1e-3,
        };
        ImageResult {
            label: Some(2),
            target: 2,
            prediction: 1,
            prob_target: 0.4,
            prob_prediction: 0.5,
            methods: BTreeMap::from([(
                Method::Path,
                MethodResult {
                    path: vec![3, 1],
                    sets: None,
                    jas,
                    prob_removed: 0.1,
                    prob_enhanced: 0.7,
                    margins: Some(vec![0.1, 0.2]),
                    neurons: None,
                },
            )]),
        }
    }

    #[test]
    fn records_round_trip_and_keep_unknown_fields() {
        let done = Record {
            index: 7,
            source: "a/b.png".into(),
            image: Some(ImageId::new(
                std::path::Path::new("a/b.png"),
                None,
                Some("ab".repeat(32)),
            )),
            outcome: Outcome::Done {
                label_name: Some("bag".into()),
                result: result(),
            },
            extra: Extra::from([("newer".to_string(), Value::from(3))]),
        };
        let v = serde_json::to_value(&done).unwrap();
        assert_eq!(v["kind"], "image");
        assert_eq!(v["methods"]["path"]["path"], serde_json::json!([3, 1]));
        assert_eq!(v["label_name"], "bag");
        assert_eq!(v["newer"], 3);
        assert_eq!(serde_json::from_value::<Record>(v).unwrap(), done);
        let failed = Record {
            index: 1,
            source: "x.png".into(),
            image: None,
            outcome: Outcome::Failed {
                error: "cannot decode".into(),
            },
            extra: Extra::new(),
        };
        let v = serde_json::to_value(&failed).unwrap();
        assert_eq!(v["error"], "cannot decode");
        assert_eq!(serde_json::from_value::<Record>(v).unwrap(), failed);
    }

    #[test]
    fn differences_name_the_nested_field_and_show_where_long_values_differ() {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/results/before_schema.jsonl"
        ));
        let h: Header = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let mut other = h.clone();
        let long = "x".repeat(200);
        let mut mine = h.clone();
        mine.model.path = format!("/data/{long}/ünïcode-a.npz");
        other.model.path = format!("/data/{long}/ünïcode-b.npz");
        let d = mine.first_difference(&other);
        assert!(d.starts_with("`model.path` (..."), "{d}");
        assert!(
            d.contains("ünïcode-a.npz") && d.contains("ünïcode-b.npz"),
            "{d}"
        );
        other.model.path = mine.model.path.clone();
        other.inputs.count += 1;
        assert_eq!(
            mine.first_difference(&other),
            "header",
            "the count is not the run's"
        );
        other.top_k = 3;
        assert_eq!(mine.first_difference(&other), "`top_k` (1 vs 3)");
    }

    #[test]
    fn the_precision_mode_is_part_of_the_run() {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/results/before_schema.jsonl"
        ));
        let h: Header = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(h.dtype, Precision::F32);
        for p in [Precision::Tf32, Precision::Bf16] {
            let mut other = h.clone();
            other.dtype = p;
            let v = serde_json::to_value(&other).unwrap();
            assert_eq!(v["dtype"], p.to_string());
            assert_eq!(serde_json::from_value::<Header>(v).unwrap(), other);
            // A resume or merge in another precision is refused with this difference.
            assert!(!h.same_run(&other));
            assert_eq!(
                h.first_difference(&other),
                format!("`dtype` (\"f32\" vs \"{p}\")")
            );
        }
    }

    #[test]
    fn bad_records_are_refused() {
        for bad in [
            r#"{"kind":"header","index":1}"#,
            r#"{"kind":"image","source":"x"}"#,
            r#"{"kind":"image","index":1,"source":"x","target":1}"#,
        ] {
            assert!(serde_json::from_str::<Record>(bad).is_err(), "{bad}");
        }
    }
}
