//! The tensors of a Hugging Face weights file seen through their file names: taken by name with
//! errors naming the file, and each canonical tensor's file name remembered for later checks.
//! Shared by the ViT/DeiT, DINOv2 and CLIP readers.
use super::ModelError;
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// Tensors of a weights file, by name, with errors naming the file and the tensor; remembers
/// which file tensor each canonical one came from, so that later checks name the file's tensor.
pub(crate) struct Source<'a> {
    pub tensors: &'a HashMap<String, Tensor>,
    pub path: &'a Path,
    pub origin: std::cell::RefCell<HashMap<String, String>>,
}

impl<'a> Source<'a> {
    pub fn new(tensors: &'a HashMap<String, Tensor>, path: &'a Path) -> Self {
        Source {
            tensors,
            path,
            origin: Default::default(),
        }
    }
    /// Records that canonical `canon` is the file's `name`.
    pub fn note(&self, canon: &str, name: &str) {
        self.origin
            .borrow_mut()
            .insert(canon.to_string(), name.to_string());
    }
    pub fn take(&self, name: &str) -> Result<Tensor, ModelError> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| ModelError::Missing {
                path: self.path.to_path_buf(),
                name: name.to_string(),
            })
    }
    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
    /// The first of `prefixes` (each ending in `.` or empty) under which `name` exists.
    pub fn prefix<'p>(&self, prefixes: &[&'p str], name: &str) -> Result<&'p str, ModelError> {
        prefixes
            .iter()
            .find(|p| self.has(&format!("{p}{name}")))
            .copied()
            .ok_or_else(|| ModelError::Missing {
                path: self.path.to_path_buf(),
                name: format!("{}{name}", prefixes[0]),
            })
    }
    /// Concatenates the query, key and value projections (`{l}.{q}.{p}` for each name in `qkv`)
    /// into `out`'s `{c}.attn.qkv.{p}`.
    pub fn qkv(
        &self,
        out: &mut HashMap<String, Tensor>,
        l: &str,
        qkv: [&str; 3],
        c: &str,
    ) -> Result<(), ModelError> {
        for p in ["weight", "bias"] {
            let parts = qkv
                .iter()
                .map(|q| self.take(&format!("{l}.{q}.{p}")))
                .collect::<Result<Vec<_>, _>>()?;
            let cat = Tensor::cat(&parts, 0).map_err(ModelError::tensor(self.path))?;
            let names: Vec<String> = qkv.iter().map(|q| format!("{l}.{q}.{p}")).collect();
            self.note(&format!("{c}.attn.qkv.{p}"), &names.join(" + "));
            out.insert(format!("{c}.attn.qkv.{p}"), cat);
        }
        Ok(())
    }
    /// Block `i` of the file's layer `l`: query, key and value of `{l}.{attn}` concatenated, and
    /// each `(file, canonical)` pair of `layers` copied from `{l}.{file}` to `blocks.{i}.{canonical}`.
    pub fn block(
        &self,
        out: &mut HashMap<String, Tensor>,
        (l, i): (&str, usize),
        (attn, qkv): (&str, [&str; 3]),
        layers: &[(&str, &str)],
    ) -> Result<(), ModelError> {
        let c = format!("blocks.{i}");
        self.qkv(out, &format!("{l}.{attn}"), qkv, &c)?;
        for (from, to) in layers {
            self.copy(out, &format!("{l}.{from}"), &format!("{c}.{to}"))?;
        }
        Ok(())
    }
    /// The embeddings under `e` of the ViT-style layouts (ViT, DeiT, DINOv2): notes that the
    /// prefix tokens and position rows come from `{e}.cls_token` and `{e}.position_embeddings`
    /// (the caller builds them) and copies the patch projection.
    pub fn embeddings(&self, out: &mut HashMap<String, Tensor>, e: &str) -> Result<(), ModelError> {
        self.note("cls_token", &format!("{e}.cls_token"));
        self.note("pos_embed", &format!("{e}.position_embeddings"));
        self.copy(
            out,
            &format!("{e}.patch_embeddings.projection"),
            "patch_embed.proj",
        )
    }
    /// Copies `{src}.weight` / `.bias` to `{dst}.weight` / `.bias`.
    pub fn copy(
        &self,
        out: &mut HashMap<String, Tensor>,
        src: &str,
        dst: &str,
    ) -> Result<(), ModelError> {
        for p in ["weight", "bias"] {
            out.insert(format!("{dst}.{p}"), self.take(&format!("{src}.{p}"))?);
            self.note(&format!("{dst}.{p}"), &format!("{src}.{p}"));
        }
        Ok(())
    }
}
