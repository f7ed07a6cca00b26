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
            ("output", format!("embedding of width {}", cfg.num_classes))
        } else {
            ("classes", cfg.num_classes.to_string())
        };
        let registers = match cfg.registers {
            0 => String::new(),
            r => format!(", of which {r} registers"),
        };
        let (patch, heads) = (cfg.patch_size, cfg.heads);
        let rows = [
            ("model", name.to_string()),
            ("layout", format!("{:?}", self.layout)),
            ("family", format!("{:?}", self.family)),
            (
                "image size",
                format!("{} (patch {patch}, grid {grid}x{grid})", cfg.image_size),
            ),
            ("layers", cfg.layers.to_string()),
            (
                "hidden",
                format!("{} ({heads} heads of {})", cfg.hidden, cfg.head_dim()),
            ),
            ("mlp", format!("{} neurons per layer", cfg.mlp_dim)),
            output,
            (
                "tokens",
                format!("{} ({} prefix{registers})", cfg.tokens(), cfg.prefix_tokens),
            ),
            ("pooling", format!("{:?}", cfg.pool)),
            ("gelu", format!("{:?}", cfg.gelu)),
            (
                "options",
                format!("layer_scale {}, pre_norm {}", cfg.layer_scale, cfg.pre_norm),
            ),
            ("layernorm", format!("eps {:e}", cfg.ln_eps)),
            (
                "forward",
                format!("{:.3} GFLOP per image", cfg.forward_flops() / 1e9),
            ),
        ];
        rows.iter().map(|(k, v)| format!("{k:<13}{v}\n")).collect()
    }
}
