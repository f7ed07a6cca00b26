//! `Model`: a loaded ViT with preprocessing, prediction, path discovery, JAS and manipulation.
use crate::convert::{compute_error, float_array, image_error, type_name, value_error, FloatData};
use candle_core::{DType, Tensor};
use image::RgbImage;
use neuronpath::attribution::discover::{discover_batch_checked, Method, Request, TargetKind};
use neuronpath::attribution::jas::edited_probabilities;
use neuronpath::attribution::spatial::{spatial_attribution, PathInput};
use neuronpath::attribution::{
    clean_pass, joint_attribution, top_k, AttributionError, AttributionSettings, NeuronSets,
};
use neuronpath::io::inputs::array_row_key;
use neuronpath::io::preprocess::{decode_rgb_bytes, load_image, preprocess_rgb, Normalization};
use neuronpath::io::results::{Outcome, Record};
use neuronpath::model::load::Loaded;
use neuronpath::model::{gradients, Rows, Vit};
use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Instant;

/// Where a model came from (its name in records and errors).
pub enum Source {
    File(PathBuf),
    Memory(String),
}

/// A Vision Transformer loaded by neuronpath.
#[pyclass(frozen, module = "neuronpath._native")]
pub struct Model {
    loaded: Loaded,
    name: String,
    norm: Normalization,
}

/// Preprocessed images (N, 3, S, S) in C order, with a name for each.
struct Images {
    n: usize,
    shape: Vec<usize>,
    data: FloatData,
    sources: Vec<String>,
}

impl Images {
    /// The key that seeds image `i`'s random choices: the CLI's for the same array row, so a
    /// random baseline here equals the one `neuronpath discover` draws for the `.npy` file.
    fn key(&self, i: usize) -> u64 {
        let per: usize = self.shape[1..].iter().product();
        let r = i * per..(i + 1) * per;
        match &self.data {
            FloatData::F32(v) => array_row_key(v[r].iter().copied()),
            FloatData::F64(v) => array_row_key(v[r].iter().map(|&x| x as f32)),
        }
    }

    /// Images `range` as a tensor of the model's dtype and device.
    fn batch(&self, range: std::ops::Range<usize>, model: &Vit) -> candle_core::Result<Tensor> {
        let per: usize = self.shape[1..].iter().product();
        let (a, b) = (range.start * per, range.end * per);
        let part = match &self.data {
            FloatData::F32(v) => FloatData::F32(v[a..b].to_vec()),
            FloatData::F64(v) => FloatData::F64(v[a..b].to_vec()),
        };
        let mut shape = self.shape.clone();
        shape[0] = range.len();
        part.into_tensor(&shape, model.dtype(), model.device())
    }
}

/// One image given to `preprocess`.
enum Picture {
    Path(PathBuf),
    Rgb(RgbImage, String),
}

/// Ctrl-C between passes: the check takes the GIL for a moment; the Python exception it finds
/// is kept here and raised once the computation has stopped.
struct Interrupt {
    err: RefCell<Option<PyErr>>,
}

impl Interrupt {
    fn new() -> Self {
        Interrupt {
            err: RefCell::new(None),
        }
    }
    fn check(&self) -> candle_core::Result<()> {
        Python::attach(|py| py.check_signals()).map_err(|e| {
            *self.err.borrow_mut() = Some(e);
            candle_core::Error::Msg("interrupted".into())
        })
    }
    /// The Python exception for a failed computation: the interrupt, else the library's error.
    fn error(&self, e: candle_core::Error) -> PyErr {
        self.err
            .borrow_mut()
            .take()
            .unwrap_or_else(|| compute_error(e))
    }
}

/// Progress of a long call on stderr (`True`) or through the caller's `fn(done, total)`.
struct Progress {
    what: &'static str,
    sink: Option<Py<PyAny>>,
    text: bool,
    start: Instant,
}

impl Progress {
    fn new(what: &'static str, progress: &Bound<'_, PyAny>) -> PyResult<Self> {
        let (sink, text) = if progress.is_callable() {
            (Some(progress.clone().unbind()), false)
        } else {
            (None, progress.is_truthy()?)
        };
        Ok(Progress {
            what,
            sink,
            text,
            start: Instant::now(),
        })
    }

    fn report(&self, done: usize, total: usize) -> PyResult<()> {
        if self.sink.is_none() && !self.text {
            return Ok(());
        }
        Python::attach(|py| {
            if let Some(f) = &self.sink {
                f.call1(py, (done, total))?;
                return Ok(());
            }
            let secs = self.start.elapsed().as_secs_f64();
            let eta = if done > 0 {
                format!("ETA {:.0}s", secs / done as f64 * (total - done) as f64)
            } else {
                "ETA ?".into()
            };
            let end = if done == total { "\n" } else { "" };
            let line = format!(
                "\r{}: {done}/{total} images, {secs:.1}s elapsed, {eta}   {end}",
                self.what
            );
            let err = py.import("sys")?.getattr("stderr")?;
            err.call_method1("write", (line,))?;
            err.call_method0("flush")?;
            Ok(())
        })
    }
}

fn parse_methods(methods: &Bound<'_, PyAny>) -> PyResult<Vec<Method>> {
    let names: Vec<String> = if let Ok(s) = methods.cast::<PyString>() {
        s.to_cow()?
            .split(',')
            .map(|m| m.trim().to_string())
            .collect()
    } else {
        methods.extract().map_err(|_| {
            value_error("methods must be a sequence of method names (path, activation, influence, ig, random)")
        })?
    };
    let mut out = Vec::new();
    for n in &names {
        out.push(n.parse::<Method>().map_err(value_error)?);
    }
    if out.is_empty() {
        return Err(value_error("methods is empty"));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn positive(v: usize, what: &str) -> PyResult<usize> {
    if v == 0 {
        return Err(value_error(format!("{what} must be at least 1")));
    }
    Ok(v)
}

impl Model {
    pub fn new(loaded: Loaded, source: Source, normalize: Option<&str>) -> PyResult<Model> {
        let name = match source {
            Source::File(p) => p.display().to_string(),
            Source::Memory(n) => n,
        };
        let norm = match (normalize, loaded.normalization) {
            (Some(n), _) => n.parse::<Normalization>().map_err(|e| {
                value_error(format!("normalize: {e}"))
            })?,
            (None, Some(ms)) => Normalization::from_mean_std(ms).ok_or_else(|| {
                value_error(format!(
                    "{name}: unsupported normalisation {ms:?}; pass normalize=\"imagenet\" or \"half\""
                ))
            })?,
            (None, None) => Normalization::ImageNet,
        };
        Ok(Model { loaded, name, norm })
    }

    fn vit(&self) -> &Vit {
        &self.loaded.model
    }

    fn rows(&self) -> Rows {
        // As the CLI: the MAE variant's neurons are on the patch rows, everyone else's on CLS.
        Rows::of_model(&self.vit().cfg)
    }

    /// The model as `compat` runs it (the authors' MAE `fc_norm` twice), as the CLI loads it.
    fn variant(&self, compat: bool) -> Vit {
        let mut m = self.vit().clone();
        m.cfg.double_fc_norm = compat;
        m
    }

    fn chunk_rows(&self, memory_limit_mb: Option<usize>) -> PyResult<usize> {
        let limit = match memory_limit_mb {
            Some(0) => return Err(value_error("memory_limit_mb must be at least 1")),
            Some(mb) => mb
                .checked_mul(1 << 20)
                .ok_or_else(|| value_error("memory_limit_mb is too large"))?,
            None => gradients::default_memory_limit(self.vit().device()),
        };
        Ok(gradients::chunk_rows(self.vit(), limit))
    }

    /// Images from a float array (N, 3, S, S), or anything `preprocess` takes.
    fn images(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<Images> {
        let dtype_is = |a: &Bound<'_, PyUntypedArray>, d: Bound<'_, numpy::PyArrayDescr>| {
            a.dtype().is_equiv_to(&d)
        };
        let (shape, data, sources) = match x.cast::<PyUntypedArray>() {
            Ok(a) if dtype_is(a, numpy::dtype::<u8>(py)) => self.preprocessed(py, x)?,
            Ok(_) => {
                // A float array (anything else gets float_array's message).
                let (shape, data) = float_array(x, "x")?;
                let n = shape.first().copied().unwrap_or(0);
                (shape, data, (0..n).map(|i| format!("array[{i}]")).collect())
            }
            Err(_) => self.preprocessed(py, x)?,
        };
        let cfg = &self.vit().cfg;
        let want = [cfg.channels, cfg.image_size, cfg.image_size];
        if shape.len() != 4 || shape[1..] != want {
            return Err(value_error(format!(
                "x must have shape (N, {}, {}, {}), not {shape:?}{}",
                want[0],
                want[1],
                want[2],
                if shape.len() == 3 {
                    " (one image: pass x[None])"
                } else {
                    ""
                }
            )));
        }
        if shape[0] == 0 {
            return Err(value_error("x holds no images"));
        }
        if !data.all_finite() {
            return Err(value_error("x contains NaN or infinite values"));
        }
        Ok(Images {
            n: shape[0],
            shape,
            data,
            sources,
        })
    }

    /// `preprocess` of paths or uint8 images, as (shape, values, sources).
    fn preprocessed(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
    ) -> PyResult<(Vec<usize>, FloatData, Vec<String>)> {
        let pics = pictures(x)?;
        let sources = pics
            .iter()
            .map(|p| match p {
                Picture::Path(p) => p.display().to_string(),
                Picture::Rgb(_, name) => name.clone(),
            })
            .collect();
        let n = pics.len();
        let data = self.preprocess_pictures(py, pics)?;
        let s = self.vit().cfg.image_size;
        Ok((vec![n, 3, s, s], FloatData::F32(data), sources))
    }

    fn preprocess_pictures(&self, py: Python<'_>, pics: Vec<Picture>) -> PyResult<Vec<f32>> {
        let size = self.vit().cfg.image_size as u32;
        let norm = self.norm;
        py.detach(|| {
            let mut out = Vec::with_capacity(pics.len() * 3 * (size * size) as usize);
            for p in &pics {
                match p {
                    Picture::Path(path) => out.extend(load_image(path, size, norm)?),
                    Picture::Rgb(img, _) => out.extend(preprocess_rgb(img, size, norm)),
                }
            }
            Ok(out)
        })
        .map_err(image_error)
    }

    /// Labels: one class index per image, each below the class count.
    fn labels(&self, labels: Option<&Bound<'_, PyAny>>, n: usize) -> PyResult<Option<Vec<usize>>> {
        let Some(l) = labels.filter(|l| !l.is_none()) else {
            return Ok(None);
        };
        let v: Vec<i64> = l.extract().map_err(|_| {
            value_error(format!(
                "labels must be a sequence of class indices (int), not {}",
                type_name(l)
            ))
        })?;
        if v.len() != n {
            return Err(value_error(format!("{} labels for {n} images", v.len())));
        }
        let classes = self.vit().cfg.num_classes;
        v.iter()
            .enumerate()
            .map(|(i, &c)| {
                if c < 0 || c as usize >= classes {
                    Err(value_error(format!(
                        "labels[{i}] = {c}, but the model has {classes} classes (0..{})",
                        classes - 1
                    )))
                } else {
                    Ok(c as usize)
                }
            })
            .collect::<PyResult<Vec<_>>>()
            .map(Some)
    }

    /// Neuron sets `[image][layer][rank]` from an int array (N, L) or (N, L, K).
    fn neuron_sets(
        &self,
        py: Python<'_>,
        paths: &Bound<'_, PyAny>,
        n: usize,
    ) -> PyResult<Vec<NeuronSets>> {
        let np = py.import("numpy")?;
        let arr = np.call_method1("asarray", (paths,))?;
        let arr = arr
            .cast::<PyUntypedArray>()
            .map_err(|_| value_error("paths must be an array of neuron indices"))?;
        let kind: String = arr.dtype().getattr("kind")?.extract()?;
        if kind != "i" && kind != "u" {
            return Err(value_error(format!(
                "paths must hold integer neuron indices, not {}",
                arr.dtype().str()?
            )));
        }
        let arr = arr.call_method1("astype", ("int64",))?;
        let arr = arr.cast::<PyArrayDyn<i64>>()?.readonly();
        let view = arr.as_array();
        let shape = view.shape().to_vec();
        let (layers, mlp) = (self.vit().cfg.layers, self.vit().cfg.mlp_dim);
        if !(shape.len() == 2 || shape.len() == 3)
            || shape[0] != n
            || shape[1] != layers
            || shape.get(2) == Some(&0)
        {
            return Err(value_error(format!(
                "paths must have shape ({n}, {layers}) (one neuron per layer and image) or ({n}, {layers}, K), not {shape:?}"
            )));
        }
        let k = shape.get(2).copied().unwrap_or(1);
        let flat: Vec<i64> = view.iter().copied().collect();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let mut sets = Vec::with_capacity(layers);
            for l in 0..layers {
                let set: Vec<i64> = flat[(i * layers + l) * k..(i * layers + l + 1) * k].to_vec();
                let mut units = Vec::with_capacity(k);
                for &u in &set {
                    if u < 0 || u as usize >= mlp {
                        return Err(value_error(format!(
                            "paths[{i}] layer {l}: neuron {u}, but layers have {mlp} neurons (0..{})",
                            mlp - 1
                        )));
                    }
                    if units.contains(&(u as usize)) {
                        return Err(value_error(format!(
                            "paths[{i}] layer {l}: neuron {u} twice"
                        )));
                    }
                    units.push(u as usize);
                }
                sets.push(units);
            }
            out.push(sets);
        }
        Ok(out)
    }

    /// Class probabilities `[image][class]` of the clean model, in batches, interruptible.
    fn probabilities(&self, py: Python<'_>, x: &Images, batch: usize) -> PyResult<Vec<Vec<f64>>> {
        let model = self.vit();
        py.detach(|| {
            let stop = Interrupt::new();
            let mut out = Vec::with_capacity(x.n);
            for s in (0..x.n).step_by(batch) {
                let r = (|| {
                    stop.check()?;
                    let t = x.batch(s..(s + batch).min(x.n), model)?;
                    model
                        .probabilities(&t, &[])?
                        .to_dtype(DType::F64)?
                        .to_vec2::<f64>()
                })();
                out.extend(r.map_err(|e| stop.error(e))?);
            }
            Ok(out)
        })
    }

    fn targets(&self, labels: Option<Vec<usize>>, clean: &[Vec<f64>]) -> Vec<usize> {
        labels.unwrap_or_else(|| clean.iter().map(|p| top_k(p, 1)[0]).collect())
    }

    fn describe(&self) -> Value {
        let cfg = &self.vit().cfg;
        json!({
            "model": self.name,
            "layout": self.loaded.layout,
            "family": self.loaded.family,
            "config": cfg,
            "class_names": self.loaded.class_names,
            "forward_gflop": cfg.forward_flops() / 1e9,
            "normalization": self.norm.to_string(),
            "neuron_modules": self.loaded.neuron_modules,
        })
    }
}

/// The images of a `preprocess` argument: a path, an HxWx3 (or HxW, HxWx4) uint8 array, a stack
/// (N, H, W, 3), or a list of those.
fn pictures(x: &Bound<'_, PyAny>) -> PyResult<Vec<Picture>> {
    if let Ok(p) = x.extract::<PathBuf>() {
        return Ok(vec![Picture::Path(p)]);
    }
    if let Ok(a) = x.cast::<PyUntypedArray>() {
        if a.ndim() == 4 {
            let n = a.shape()[0];
            return (0..n)
                .map(|i| rgb(&x.get_item(i)?, &format!("image[{i}]")))
                .map(|r| r.map(|(img, name)| Picture::Rgb(img, name)))
                .collect();
        }
        let (img, name) = rgb(x, "image[0]")?;
        return Ok(vec![Picture::Rgb(img, name)]);
    }
    let items: Vec<Bound<'_, PyAny>> = x
        .try_iter()
        .map_err(|_| {
            value_error(format!(
                "images must be paths, uint8 arrays or a list of them, not {}",
                type_name(x)
            ))
        })?
        .collect::<PyResult<_>>()?;
    if items.is_empty() {
        return Err(value_error("no images"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            if let Ok(p) = it.extract::<PathBuf>() {
                Ok(Picture::Path(p))
            } else {
                rgb(it, &format!("image[{i}]")).map(|(img, name)| Picture::Rgb(img, name))
            }
        })
        .collect()
}

/// An 8-bit image array as RGB, with PIL's `convert("RGB")`: grey is repeated, alpha dropped.
fn rgb(a: &Bound<'_, PyAny>, name: &str) -> PyResult<(RgbImage, String)> {
    let arr = a.cast::<PyArrayDyn<u8>>().map_err(|_| {
        let what = a
            .cast::<PyUntypedArray>()
            .map(|u| u.dtype().str().map(|s| s.to_string()).unwrap_or_default())
            .unwrap_or_else(|_| type_name(a));
        value_error(format!(
            "{name}: images must be file paths or uint8 arrays (H, W, 3), not {what} (preprocessed float arrays go to predict/discover directly)"
        ))
    })?;
    let arr = arr.readonly();
    let view = arr.as_array();
    let shape = view.shape().to_vec();
    let (h, w, c) = match shape[..] {
        [h, w] => (h, w, 1),
        [h, w, c] if [1, 3, 4].contains(&c) => (h, w, c),
        _ => {
            return Err(value_error(format!(
                "{name}: shape {shape:?}; expected (H, W, 3), (H, W, 4) or (H, W)"
            )))
        }
    };
    if h == 0 || w == 0 || h > 1 << 16 || w > 1 << 16 {
        return Err(value_error(format!(
            "{name}: {h}x{w} pixels is not a usable image size"
        )));
    }
    let flat: Vec<u8> = view.iter().copied().collect();
    let mut raw = Vec::with_capacity(h * w * 3);
    for px in flat.chunks_exact(c) {
        match c {
            1 => raw.extend([px[0]; 3]),
            _ => raw.extend(&px[..3]),
        }
    }
    let img = RgbImage::from_raw(w as u32, h as u32, raw).expect("buffer of h*w*3 bytes");
    Ok((img, name.to_string()))
}

fn to_numpy_2d<'py, T: numpy::Element>(
    py: Python<'py>,
    rows: Vec<Vec<T>>,
    cols: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let n = rows.len();
    let flat: Vec<T> = rows.into_iter().flatten().collect();
    Ok(PyArray1::from_vec(py, flat).reshape([n, cols])?.into_any())
}

fn pythonize_value<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    pythonize::pythonize(py, v).map_err(|e| compute_error(candle_core::Error::Msg(e.to_string())))
}

#[pymethods]
impl Model {
    /// The paper's preprocessing of `images` (paths, HxWx3 uint8 arrays, or a list of them):
    /// PIL-exact bilinear resize to the model's size, scaling to [0, 1], the model's normalisation.
    /// Returns float32 (N, 3, S, S).
    fn preprocess<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pics = pictures(images)?;
        let n = pics.len();
        let data = self.preprocess_pictures(py, pics)?;
        let s = self.vit().cfg.image_size;
        Ok(PyArray1::from_vec(py, data)
            .reshape([n, 3, s, s])?
            .into_any())
    }

    /// Class probabilities (N, classes), float64, of images x (N, 3, S, S) float32/float64 (or
    /// anything `preprocess` takes).
    #[pyo3(signature = (x, *, batch=32))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        batch: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let batch = positive(batch, "batch")?;
        let images = self.images(py, x)?;
        let probs = self.probabilities(py, &images, batch)?;
        to_numpy_2d(py, probs, self.vit().cfg.num_classes)
    }

    /// What `neuronpath inspect --json` prints, plus the normalisation and neuron module names.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pythonize_value(py, &self.describe())
    }

    /// The class names the checkpoint records, if any.
    #[getter]
    fn class_names(&self) -> Option<Vec<String>> {
        self.loaded.class_names.clone()
    }

    /// Encoder blocks (path length).
    #[getter]
    fn layers(&self) -> usize {
        self.vit().cfg.layers
    }

    /// MLP neurons per layer.
    #[getter]
    fn neurons(&self) -> usize {
        self.vit().cfg.mlp_dim
    }

    #[getter]
    fn num_classes(&self) -> usize {
        self.vit().cfg.num_classes
    }

    #[getter]
    fn image_size(&self) -> usize {
        self.vit().cfg.image_size
    }

    /// "f32" or "f64".
    #[getter]
    fn dtype(&self) -> &'static str {
        match self.vit().dtype() {
            DType::F64 => "f64",
            _ => "f32",
        }
    }

    /// The checkpoint's name of the module whose output holds layer `layer`'s neurons, e.g.
    /// `blocks.3.mlp.act` (timm) or `vit.encoder.layer.3.intermediate` (Hugging Face).
    fn neuron_module(&self, layer: usize) -> PyResult<String> {
        let cfg = &self.vit().cfg;
        if layer >= cfg.layers {
            return Err(value_error(format!(
                "layer {layer}, but the model has {} layers",
                cfg.layers
            )));
        }
        Ok(self.loaded.neuron_modules[layer].clone())
    }

    fn __repr__(&self) -> String {
        let c = &self.vit().cfg;
        format!(
            "Model({:?}, {} layers x {} neurons, {} classes, {}px, {})",
            self.name,
            c.layers,
            c.mlp_dim,
            c.num_classes,
            c.image_size,
            self.dtype()
        )
    }

    /// Neuron paths of every image; one dict per image with the fields of a `discover` JSON Lines
    /// record.
    #[pyo3(signature = (x, labels=None, *, methods=None, steps=20, top_k=1, target="label", compat=false, memory_limit_mb=None, progress=None, seed=0, batch=4, sources=None))]
    #[allow(clippy::too_many_arguments)]
    fn discover<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        labels: Option<&Bound<'py, PyAny>>,
        methods: Option<&Bound<'py, PyAny>>,
        steps: usize,
        top_k: usize,
        target: &str,
        compat: bool,
        memory_limit_mb: Option<usize>,
        progress: Option<&Bound<'py, PyAny>>,
        seed: u64,
        batch: usize,
        sources: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let methods = match methods {
            Some(m) if !m.is_none() => parse_methods(m)?,
            _ => vec![
                Method::Path,
                Method::Activation,
                Method::Influence,
                Method::Random,
            ],
        };
        let steps = positive(steps, "steps")?;
        let batch = positive(batch, "batch")?;
        let mlp = self.vit().cfg.mlp_dim;
        if top_k == 0 || top_k > mlp {
            return Err(value_error(format!(
                "top_k must be in 1..={mlp}, not {top_k}"
            )));
        }
        let target = match target {
            "label" => TargetKind::Label,
            "predicted" => TargetKind::Predicted,
            other => {
                return Err(value_error(format!(
                    "target must be \"label\" or \"predicted\", not {other:?}"
                )))
            }
        };
        let mut images = self.images(py, x)?;
        if let Some(s) = sources {
            if s.len() != images.n {
                return Err(value_error(format!(
                    "{} sources for {} images",
                    s.len(),
                    images.n
                )));
            }
            images.sources = s;
        }
        let labels = self.labels(labels, images.n)?;
        if target == TargetKind::Label && labels.is_none() {
            return Err(value_error(
                "target=\"label\" needs labels (one class index per image), or use target=\"predicted\"",
            ));
        }
        let progress = match progress {
            Some(p) => Progress::new("discover", p)?,
            None => Progress::new("discover", pyo3::types::PyBool::new(py, true).as_any())?,
        };
        let req = Request {
            settings: AttributionSettings {
                steps,
                top_k,
                compat,
                rows: self.rows(),
                chunk_rows: self.chunk_rows(memory_limit_mb)?,
                engine: Default::default(),
            },
            methods,
            target,
            seed,
        };
        let model = self.variant(compat);
        let class_names = self.loaded.class_names.clone();
        let modules = &self.loaded.neuron_modules;
        let labels: Vec<Option<usize>> = match labels {
            Some(l) => l.into_iter().map(Some).collect(),
            None => vec![None; images.n],
        };
        let records: Vec<Value> = py.detach(|| {
            let stop = Interrupt::new();
            let check = || stop.check();
            let mut out = Vec::with_capacity(images.n);
            for s in (0..images.n).step_by(batch) {
                let range = s..(s + batch).min(images.n);
                let keys: Vec<u64> = range.clone().map(|i| images.key(i)).collect();
                let t = images
                    .batch(range.clone(), &model)
                    .map_err(|e| stop.error(e))?;
                let results =
                    discover_batch_checked(&model, &t, &labels[range.clone()], &keys, &req, &check)
                        .map_err(|e| match e {
                            AttributionError::Tensor(e) => stop.error(e),
                            other => value_error(other),
                        })?;
                for (i, mut result) in range.zip(results) {
                    result.name_neurons(modules);
                    let label_name = class_names
                        .as_ref()
                        .and_then(|n| result.label.and_then(|l| n.get(l)).cloned());
                    // The CLI's record type, so both give the same fields.
                    let rec = Record {
                        index: i as u64,
                        source: images.sources[i].clone(),
                        image: None,
                        outcome: Outcome::Done { label_name, result },
                        extra: Default::default(),
                    };
                    out.push(
                        serde_json::to_value(&rec)
                            .map_err(|e| compute_error(candle_core::Error::Msg(e.to_string())))?,
                    );
                }
                progress.report(out.len(), images.n)?;
            }
            Ok::<_, PyErr>(out)
        })?;
        let list = PyList::empty(py);
        for r in &records {
            list.append(pythonize_value(py, r)?)?;
        }
        Ok(list)
    }

    /// JAS of given neuron sets: `paths` (N, L) or (N, L, K) neuron indices; F is the
    /// probability of `labels` (default: each image's predicted class). One dict per image:
    /// `reference` (the paper's form), `additive`, `delta`.
    #[pyo3(signature = (x, paths, labels=None, *, steps=20, compat=false, memory_limit_mb=None, batch=4))]
    #[allow(clippy::too_many_arguments)]
    fn jas<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        paths: &Bound<'py, PyAny>,
        labels: Option<&Bound<'py, PyAny>>,
        steps: usize,
        compat: bool,
        memory_limit_mb: Option<usize>,
        batch: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let steps = positive(steps, "steps")?;
        let batch = positive(batch, "batch")?;
        let images = self.images(py, x)?;
        let sets = self.neuron_sets(py, paths, images.n)?;
        let labels = self.labels(labels, images.n)?;
        let settings = AttributionSettings {
            steps,
            top_k: sets[0][0].len(),
            compat,
            rows: self.rows(),
            chunk_rows: self.chunk_rows(memory_limit_mb)?,
            engine: Default::default(),
        };
        let model = self.variant(compat);
        let out = py.detach(|| {
            let stop = Interrupt::new();
            let mut out = Vec::with_capacity(images.n);
            for s in (0..images.n).step_by(batch) {
                let range = s..(s + batch).min(images.n);
                let r = (|| {
                    stop.check()?;
                    let t = images.batch(range.clone(), &model)?;
                    let (probs, acts) = clean_pass(&model, &t, settings.rows)?;
                    let targets: Vec<usize> = match &labels {
                        Some(l) => l[range.clone()].to_vec(),
                        None => probs.iter().map(|p| top_k(p, 1)[0]).collect(),
                    };
                    let clean: Vec<f64> = probs.iter().zip(&targets).map(|(p, &t)| p[t]).collect();
                    joint_attribution(
                        &model,
                        &t,
                        &targets,
                        &acts,
                        &sets[range.clone()],
                        &clean,
                        &settings,
                    )
                })();
                out.extend(r.map_err(|e| stop.error(e))?);
            }
            Ok::<_, PyErr>(out)
        })?;
        let list = PyList::empty(py);
        for j in &out {
            list.append(pythonize_value(
                py,
                &serde_json::to_value(j).unwrap_or(Value::Null),
            )?)?;
        }
        Ok(list)
    }

    /// Where in the image each path looks (integrated gradients w.r.t. the patch embeddings,
    /// `neuronpath::attribution::spatial`): per image a dict with `grid`, `steps`, `neurons`
    /// (one map per layer's path neuron: `layer`, `unit`, `value`, `baseline`, `patches`,
    /// `delta`), `path` (F through the path alone) and `maps`, all of them as one float64 array
    /// (L + 1, G, G), the path's last. `paths` (N, L): one neuron per layer; F is the probability
    /// of `labels` (default: the clean prediction).
    #[pyo3(signature = (x, paths, labels=None, *, steps=20, memory_limit_mb=None))]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        paths: &Bound<'py, PyAny>,
        labels: Option<&Bound<'py, PyAny>>,
        steps: usize,
        memory_limit_mb: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let steps = positive(steps, "steps")?;
        let images = self.images(py, x)?;
        let sets = self.neuron_sets(py, paths, images.n)?;
        if sets[0][0].len() != 1 {
            return Err(value_error(
                "explain takes one neuron per layer: paths of shape (N, L)",
            ));
        }
        let labels = self.labels(labels, images.n)?;
        let chunk = self.chunk_rows(memory_limit_mb)?;
        let (model, rows) = (self.vit(), self.rows());
        let maps = py.detach(|| {
            let stop = Interrupt::new();
            let mut out = Vec::with_capacity(images.n);
            for i in 0..images.n {
                let r = (|| {
                    stop.check()?;
                    let t = images.batch(i..i + 1, model)?;
                    let (probs, acts) = clean_pass(model, &t, rows)?;
                    let target = labels
                        .as_ref()
                        .map(|l| l[i])
                        .unwrap_or_else(|| top_k(&probs[0], 1)[0]);
                    let path: Vec<usize> = sets[i].iter().map(|s| s[0]).collect();
                    let input = PathInput {
                        image: &t,
                        target,
                        path: &path,
                        acts: &acts,
                        clean_prob: probs[0][target],
                        rows,
                    };
                    spatial_attribution(model, &input, steps, chunk)
                })();
                out.push(r.map_err(|e| stop.error(e))?);
            }
            Ok::<_, PyErr>(out)
        })?;
        let list = PyList::empty(py);
        for m in &maps {
            let d = pythonize_value(py, &serde_json::to_value(m).unwrap_or(Value::Null))?;
            let layers = m.neurons.len() + 1;
            let arr = PyArray1::from_vec(py, m.to_array()).reshape([layers, m.grid, m.grid])?;
            d.set_item("maps", arr)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Every neuron of `paths` (N, L) or (N, L, K) multiplied by each factor, all layers in one
    /// forward pass (0 removes, 2 enhances). Returns a dict: `factors`, `target` (N,) the class F
    /// is the probability of (`labels`, default the clean prediction), `clean` (N,) F without
    /// edits, `prob` (N, len(factors)) F after each edit, `top1` (N, len(factors)) the predicted
    /// class after each edit, `probs` (N, len(factors), classes) all probabilities.
    #[pyo3(signature = (x, paths, labels=None, factors=None, *, batch=16))]
    fn manipulate<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        paths: &Bound<'py, PyAny>,
        labels: Option<&Bound<'py, PyAny>>,
        factors: Option<Vec<f64>>,
        batch: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let batch = positive(batch, "batch")?;
        let factors = factors.unwrap_or_else(|| vec![0.0, 2.0]);
        if factors.is_empty() || factors.iter().any(|f| !f.is_finite()) {
            return Err(value_error(
                "factors must be a non-empty list of finite numbers",
            ));
        }
        let images = self.images(py, x)?;
        let sets = self.neuron_sets(py, paths, images.n)?;
        let labels = self.labels(labels, images.n)?;
        let clean = self.probabilities(py, &images, batch)?;
        let targets = self.targets(labels, &clean);
        let (model, rows) = (self.vit(), self.rows());
        // per image, per factor, per class
        let edited: Vec<Vec<Vec<f64>>> = py.detach(|| {
            let stop = Interrupt::new();
            let mut out: Vec<Vec<Vec<f64>>> = vec![Vec::new(); images.n];
            for s in (0..images.n).step_by(batch) {
                let range = s..(s + batch).min(images.n);
                for &f in &factors {
                    let r = (|| {
                        stop.check()?;
                        let t = images.batch(range.clone(), model)?;
                        edited_probabilities(model, &t, &sets[range.clone()], f, rows)
                    })();
                    for (i, p) in range.clone().zip(r.map_err(|e| stop.error(e))?) {
                        out[i].push(p);
                    }
                }
            }
            Ok::<_, PyErr>(out)
        })?;
        let (n, nf, c) = (images.n, factors.len(), self.vit().cfg.num_classes);
        let prob: Vec<f64> = edited
            .iter()
            .zip(&targets)
            .flat_map(|(e, &t)| e.iter().map(move |p| p[t]))
            .collect();
        let top1: Vec<i64> = edited
            .iter()
            .flat_map(|e| e.iter().map(|p| top_k(p, 1)[0] as i64))
            .collect();
        let all: Vec<f64> = edited.into_iter().flatten().flatten().collect();
        let d = PyDict::new(py);
        d.set_item("factors", factors.clone())?;
        d.set_item(
            "target",
            PyArray1::from_vec(py, targets.iter().map(|&t| t as i64).collect()),
        )?;
        d.set_item(
            "clean",
            PyArray1::from_vec(py, clean.iter().zip(&targets).map(|(p, &t)| p[t]).collect()),
        )?;
        d.set_item("prob", PyArray1::from_vec(py, prob).reshape([n, nf])?)?;
        d.set_item("top1", PyArray1::from_vec(py, top1).reshape([n, nf])?)?;
        d.set_item("probs", PyArray1::from_vec(py, all).reshape([n, nf, c])?)?;
        Ok(d)
    }
}

/// Images (uint8 HxWx3 arrays), labels, sources.
pub type Samples = (Vec<Py<PyAny>>, Vec<usize>, Vec<String>);

/// The embedded samples.
pub fn embedded_samples(py: Python<'_>) -> PyResult<Samples> {
    let inputs = neuronpath::embedded::samples();
    let (mut images, mut labels, mut sources) = (Vec::new(), Vec::new(), Vec::new());
    for it in inputs.items {
        let neuronpath::io::inputs::Pixels::Embedded(bytes) = it.pixels else {
            continue;
        };
        let img = decode_rgb_bytes(bytes, &it.source).map_err(image_error)?;
        let (w, h) = img.dimensions();
        let arr = PyArray1::from_vec(py, img.into_raw()).reshape([h as usize, w as usize, 3])?;
        images.push(arr.into_any().unbind());
        labels.push(it.label.unwrap_or(0));
        sources.push(it.source);
    }
    Ok((images, labels, sources))
}
