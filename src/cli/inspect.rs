//! `neuronpath inspect`: the configuration detected from a checkpoint.
use super::plans::InspectPlan;

pub fn run(plan: &InspectPlan) -> anyhow::Result<()> {
    let spec = &plan.model;
    let loaded = spec.load(false)?;
    let cfg = &loaded.model.cfg;
    if plan.json {
        let v = serde_json::json!({
            "model": spec.name(),
            "layout": loaded.layout,
            "family": loaded.family,
            "config": cfg,
            "class_names": loaded.class_names,
            "forward_gflop": cfg.forward_flops() / 1e9,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("model        {}", spec.name());
    println!("layout       {:?}", loaded.layout);
    println!("family       {:?}", loaded.family);
    println!(
        "image size   {} (patch {}, grid {}x{})",
        cfg.image_size,
        cfg.patch_size,
        cfg.grid(),
        cfg.grid()
    );
    println!("layers       {}", cfg.layers);
    println!(
        "hidden       {} ({} heads of {})",
        cfg.hidden,
        cfg.heads,
        cfg.head_dim()
    );
    println!("mlp          {} neurons per layer", cfg.mlp_dim);
    if cfg.embedding {
        println!("output       embedding of width {}", cfg.num_classes);
    } else {
        println!("classes      {}", cfg.num_classes);
    }
    println!(
        "tokens       {} ({} prefix{})",
        cfg.tokens(),
        cfg.prefix_tokens,
        match cfg.registers {
            0 => String::new(),
            r => format!(", of which {r} registers"),
        }
    );
    println!("pooling      {:?}", cfg.pool);
    println!("gelu         {:?}", cfg.gelu);
    println!(
        "options      layer_scale {}, pre_norm {}",
        cfg.layer_scale, cfg.pre_norm
    );
    println!("layernorm    eps {:e}", cfg.ln_eps);
    println!(
        "forward      {:.3} GFLOP per image",
        cfg.forward_flops() / 1e9
    );
    Ok(())
}
