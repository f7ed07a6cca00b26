//! Whether a header and its records fit the model the header describes: every index a reader
//! later uses to address a layer, a neuron or a class is checked here once, so that a damaged or
//! hand-edited file is an error naming its line instead of a panic (or a silently wrong edit) in
//! `ablate`, `atlas`, `prune` or `report`.
use super::schema::{Header, Outcome, Record};

impl Header {
    /// The model's sizes as recorded: at least one layer, neuron and output, and `top_k` within
    /// the layer width.
    pub fn check_fits(&self) -> Result<(), String> {
        let c = &self.model.config;
        for (key, v) in [
            ("layers", c.layers),
            ("mlp_dim", c.mlp_dim),
            ("hidden", c.hidden),
            ("top_k", self.top_k),
        ] {
            if v == 0 {
                return Err(format!("header: `{key}` is 0"));
            }
        }
        if self.top_k > c.mlp_dim {
            return Err(format!(
                "header: `top_k` {} but layers have {} neurons",
                self.top_k, c.mlp_dim
            ));
        }
        Ok(())
    }
}

impl Record {
    /// One image record against its run's header: the target within the model's scores, each
    /// method's path one neuron per layer, sets, margins and neuron names one entry per layer,
    /// every neuron index within the layer width.
    pub fn check_fits(&self, header: &Header) -> Result<(), String> {
        let Outcome::Done { result, .. } = &self.outcome else {
            return Ok(());
        };
        let c = &header.model.config;
        let (layers, mlp) = (c.layers, c.mlp_dim);
        let width = header.objective.width(c.num_classes);
        if result.target >= width {
            return Err(format!(
                "image {}: target {} but the model has {width} outputs",
                self.index, result.target
            ));
        }
        for (method, r) in &result.methods {
            let at = |what: &str| format!("image {}, method {}: {what}", self.index, method.name());
            if r.path.len() != layers {
                return Err(at(&format!(
                    "path of {} neurons, but the model has {layers} layers",
                    r.path.len()
                )));
            }
            let sets: &[Vec<usize>] = match &r.sets {
                Some(s) => s,
                None => &[],
            };
            if r.sets.is_some() && sets.len() != layers {
                return Err(at(&format!(
                    "sets cover {} layers, but the model has {layers}",
                    sets.len()
                )));
            }
            let neurons = std::iter::once(&r.path).chain(sets).flatten();
            if let Some(j) = neurons.copied().find(|&j| j >= mlp) {
                return Err(at(&format!(
                    "neuron {j}, but layers have {mlp} neurons (0..{})",
                    mlp - 1
                )));
            }
            if let Some(n) = r.margins.as_ref().map(Vec::len).filter(|&n| n != layers) {
                return Err(at(&format!("{n} margins for {layers} layers")));
            }
            if let Some(n) = r.neurons.as_ref().map(Vec::len).filter(|&n| n != layers) {
                return Err(at(&format!("{n} neuron names for {layers} layers")));
            }
        }
        Ok(())
    }
}
