//! What `inspect` shows of a loaded checkpoint: its layout, family and detected configuration,
//! as aligned text or as JSON.
use super::Loaded;
use serde_json::{json, Value};

impl Loaded {
    /// The configuration as JSON, under the model's display `name`.
    pub fn summary_json(&self, name: &str) -> Value {
        let cfg = &self.model.cfg;
        json!({
            "model": name,
            "layout": self.layout,
            "family": self.family,
            "config": cfg,
            "class_names": self.class_names,
            "forward_gflop": cfg.forward_flops() / 1e9,
        })
    }

    /// The configuration as one aligned `key  value` line per property.
    pub fn summary_text(&self, name: &str) -> String {
        let cfg = &self.model.cfg;
        let grid = cfg.grid();
        let output = if cfg.embedding {
            format!("output       embedding of width {}", cfg.num_classes)
        } else {
            format!("classes      {}", cfg.num_classes)
        };
        let registers = match cfg.registers {
            0 => String::new(),
            r => format!(", of which {r} registers"),
        };
        let lines = [
            format!("model        {name}"),
            format!("layout       {:?}", self.layout),
            format!("family       {:?}", self.family),
            format!(
                "image size   {} (patch {}, grid {grid}x{grid})",
                cfg.image_size, cfg.patch_size
            ),
            format!("layers       {}", cfg.layers),
            format!(
                "hidden       {} ({} heads of {})",
                cfg.hidden,
                cfg.heads,
                cfg.head_dim()
            ),
            format!("mlp          {} neurons per layer", cfg.mlp_dim),
            output,
            format!(
                "tokens       {} ({} prefix{registers})",
                cfg.tokens(),
                cfg.prefix_tokens
            ),
            format!("pooling      {:?}", cfg.pool),
            format!("gelu         {:?}", cfg.gelu),
            format!(
                "options      layer_scale {}, pre_norm {}",
                cfg.layer_scale, cfg.pre_norm
            ),
            format!("layernorm    eps {:e}", cfg.ln_eps),
            format!(
                "forward      {:.3} GFLOP per image",
                cfg.forward_flops() / 1e9
            ),
        ];
        lines.join("\n") + "\n"
    }
}
