//! `neuronpath inspect`: the configuration detected from a checkpoint.
use super::common::ModelArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let loaded = args.model.load(false)?;
    let cfg = &loaded.model.cfg;
    if args.json {
        let v = serde_json::json!({
            "model": args.model.name(),
            "layout": loaded.layout,
            "config": cfg,
            "class_names": loaded.class_names,
            "forward_gflop": cfg.forward_flops() / 1e9,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("model        {}", args.model.name());
    println!("layout       {:?}", loaded.layout);
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
    println!("classes      {}", cfg.num_classes);
    println!(
        "tokens       {} ({} prefix)",
        cfg.tokens(),
        cfg.prefix_tokens
    );
    println!("pooling      {:?}", cfg.pool);
    println!("gelu         {:?}", cfg.gelu);
    println!("layernorm    eps {:e}", cfg.ln_eps);
    println!(
        "forward      {:.3} GFLOP per image",
        cfg.forward_flops() / 1e9
    );
    Ok(())
}
