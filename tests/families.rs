//! DINOv2 (+ registers), CLIP vision towers, DeiT distilled, timm LayerScale/register, timm CLIP
//! and DeiT-distilled, and open_clip checkpoints made by transformers / timm / open_clip
//! (scripts/make_family_fixtures.py, never run by CI): float64 outputs and CLS hidden units within
//! 1e-10 of theirs; `inspect` names the family and its options; bad checkpoints give one-line
//! errors naming the file and the tensor.
mod common;
use candle_core::{DType, Tensor};
use common::*;
use neuronpath::model::load::{CheckpointLayout, Family};
use neuronpath::model::Gelu;
use neuronpath::model::{load_model, LoadOptions, Mode, Pool, Rows};
use std::path::Path;

fn f64_opts() -> LoadOptions {
    LoadOptions {
        dtype: DType::F64,
        image_size: Some(28),
        ..Default::default()
    }
}

fn rows2(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

/// Output and CLS (or distillation-row) hidden units against the reference.
fn check(key: &str, rel: &str, family: Family) {
    check_with(key, rel, family, |_| {})
}

/// [`check`] with more options than the head count (timm files do not record the GELU).
fn check_with(key: &str, rel: &str, family: Family, edit: impl Fn(&mut LoadOptions)) {
    let want = &json("families/expected.json")[key];
    let mut opts = f64_opts();
    // timm files do not record the head count.
    opts.heads = Some(4);
    edit(&mut opts);
    let loaded = load_model(&fixture(rel), &opts).unwrap();
    assert_eq!(loaded.family, family, "{key}");
    let m = loaded.model;
    assert_eq!(
        m.cfg.embedding,
        want["kind"] == "embedding",
        "{key}: output kind"
    );
    let x = npy("families/input.npy");
    let mut tokens = vec![(Rows::Cls, "hidden_cls")];
    if want.get("hidden_dist").is_some() {
        tokens.push((Rows::Dist, "hidden_dist"));
    }
    for (rows, name) in tokens {
        let out = m.forward(&x, &[], Some(rows), Mode::Frozen).unwrap();
        for (g, w) in rows2(&out.logits).iter().zip(&vec2(&want["output"])) {
            assert_close(g, w, 1e-10, &format!("{key} output"));
        }
        let layers = want[name].as_array().unwrap();
        assert_eq!(out.hidden.len(), layers.len());
        for (l, (h, w)) in out.hidden.iter().zip(layers).enumerate() {
            for (g, w) in rows2(h).iter().zip(&vec2(w)) {
                assert_close(g, w, 1e-10, &format!("{key} {name} layer {l}"));
            }
        }
        // The op-by-op oracle agrees too.
        let oracle = m.forward(&x, &[], Some(rows), Mode::Train).unwrap();
        for (g, w) in rows2(&oracle.logits).iter().zip(&vec2(&want["output"])) {
            assert_close(g, w, 1e-10, &format!("{key} oracle output"));
        }
    }
}

#[test]
fn dinov2_headless_with_bicubic_downsampled_positions() {
    check("dinov2", "families/dinov2", Family::Dinov2);
    let m = load("families/dinov2", DType::F64);
    // The file's own grid (5x5 at patch 7) when no size is asked for.
    assert_eq!((m.cfg.image_size, m.cfg.grid()), (35, 5));
    assert!(m.cfg.layer_scale && m.cfg.embedding && !m.cfg.pre_norm);
}

#[test]
fn dinov2_classifier_on_cls_and_mean_patches_with_upsampled_positions() {
    check("dinov2_cls", "families/dinov2_cls", Family::Dinov2);
    let m = load_model(&fixture("families/dinov2_cls"), &f64_opts())
        .unwrap()
        .model;
    assert_eq!(m.cfg.pool, Pool::ClsMeanPatch);
    assert_eq!(m.cfg.num_classes, 5);
}

#[test]
fn dinov2_with_registers_antialiased_positions_registers_outside_the_mean() {
    check(
        "dinov2_reg_cls",
        "families/dinov2_reg_cls",
        Family::Dinov2Registers,
    );
    let m = load_model(&fixture("families/dinov2_reg_cls"), &f64_opts())
        .unwrap()
        .model;
    assert_eq!((m.cfg.registers, m.cfg.prefix_tokens), (2, 3));
}

#[test]
fn clip_vision_tower_quick_gelu_pre_and_post_layernorm() {
    check("clip", "families/clip", Family::Clip);
    let l = load_model(&fixture("families/clip"), &f64_opts()).unwrap();
    assert_eq!(l.model.cfg.gelu, Gelu::Quick);
    assert!(l.model.cfg.pre_norm);
    // CLIP's own preprocessing statistics when the folder does not state them.
    assert_eq!(l.normalization.unwrap()[0][0], 0.48145466);
}

#[test]
fn clip_with_projection_from_safetensors_and_from_pytorch_model_bin() {
    check("clip_proj", "families/clip_proj", Family::Clip);
    check("clip_proj", "families/clip_proj_bin", Family::Clip);
}

#[test]
fn deit_distilled_mean_of_both_heads_and_both_token_rows() {
    check(
        "deit_distilled",
        "families/deit_distilled",
        Family::DeitDistilled,
    );
    let m = load_model(&fixture("families/deit_distilled"), &f64_opts())
        .unwrap()
        .model;
    assert_eq!(m.cfg.pool, Pool::ClsDist);
}

#[test]
fn timm_layerscale_and_registers_without_class_position() {
    check(
        "timm_dinov2_reg",
        "families/timm_dinov2_reg.safetensors",
        Family::Dinov2Registers,
    );
}

#[test]
fn timm_clip_tower_pre_norm_without_patch_bias_and_eps_1e5() {
    check_with(
        "timm_clip",
        "families/timm_clip.safetensors",
        Family::Clip,
        |o| o.gelu = Some(Gelu::Quick),
    );
    let mut opts = f64_opts();
    opts.heads = Some(4);
    let m = load_model(&fixture("families/timm_clip.safetensors"), &opts)
        .unwrap()
        .model;
    assert!(m.cfg.pre_norm && !m.cfg.embedding);
    assert_eq!((m.cfg.ln_eps, m.cfg.num_classes), (1e-5, 16));
}

#[test]
fn timm_deit_distilled_mean_of_both_heads_and_both_token_rows() {
    check(
        "timm_deit_distilled",
        "families/timm_deit_distilled.safetensors",
        Family::DeitDistilled,
    );
    let mut opts = f64_opts();
    opts.heads = Some(4);
    let m = load_model(&fixture("families/timm_deit_distilled.safetensors"), &opts)
        .unwrap()
        .model;
    assert_eq!((m.cfg.pool, m.cfg.prefix_tokens), (Pool::ClsDist, 2));
}

#[test]
fn open_clip_hub_folder_with_text_tower_from_pytorch_model_bin() {
    check("open_clip", "families/open_clip", Family::Clip);
    // Heads (width / head_width), quick-GELU and the preprocessing come from
    // open_clip_config.json.
    let l = load_model(&fixture("families/open_clip"), &f64_opts()).unwrap();
    assert_eq!(l.layout, CheckpointLayout::OpenClip);
    let c = &l.model.cfg;
    assert_eq!((c.heads, c.gelu, c.ln_eps), (4, Gelu::Quick, 1e-5));
    assert!(c.pre_norm && c.embedding && !c.layer_scale);
    assert_eq!(c.num_classes, 16, "the projection's width");
    assert_eq!(l.normalization, Some([[0.5; 3], [0.5; 3]]));
    assert_eq!(
        l.neuron_modules[2],
        "visual.transformer.resblocks.2.mlp.gelu"
    );
}

#[test]
fn open_clip_bare_tower_layerscale_no_ln_pre_antialiased_positions() {
    check(
        "open_clip_ls",
        "families/open_clip_ls.safetensors",
        Family::Clip,
    );
    let mut opts = f64_opts();
    opts.heads = Some(4);
    let l = load_model(&fixture("families/open_clip_ls.safetensors"), &opts).unwrap();
    assert_eq!(l.layout, CheckpointLayout::OpenClip);
    let c = &l.model.cfg;
    assert!(c.layer_scale && !c.pre_norm && c.embedding);
    assert_eq!((c.gelu, c.grid(), c.num_classes), (Gelu::Erf, 4, 12));
    // open_clip's default preprocessing (OpenAI's statistics) without a config.
    assert_eq!(l.normalization.unwrap()[1][0], 0.26862954);
    assert_eq!(l.neuron_modules[0], "transformer.resblocks.0.mlp.gelu");
}

#[test]
fn open_clip_state_dict_in_memory_with_and_without_its_config() {
    let want = &json("families/expected.json")["open_clip_ls"];
    let x = npy("families/input.npy");
    let tensors = candle_core::safetensors::load(
        fixture("families/open_clip_ls.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let label = Path::new("in-memory");
    // Without a config: the head count from the options.
    let bare = LoadOptions {
        heads: Some(4),
        ..f64_opts()
    };
    // With open_clip_config.json's contents: the head count from width / head_width.
    let cfg = serde_json::json!({"model_cfg": {"vision_cfg": {"width": 24, "head_width": 6,
        "layers": 3, "no_ln_pre": true}}});
    for (config, opts) in [(serde_json::json!({}), bare), (cfg, f64_opts())] {
        let l = neuronpath::model::load::from_state_dict(label, tensors.clone(), &config, &opts)
            .unwrap();
        assert_eq!(
            (l.layout, l.model.cfg.heads),
            (CheckpointLayout::OpenClip, 4)
        );
        let out = l.model.forward(&x, &[], None, Mode::Frozen).unwrap();
        for (g, w) in rows2(&out.logits).iter().zip(&vec2(&want["output"])) {
            assert_close(g, w, 1e-10, "open_clip state dict");
        }
    }
}

#[test]
fn inspect_names_the_family_and_every_detected_option() {
    // (fixture, extra flags, layout, family, expected config entries)
    let cases: [(&str, &[&str], &str, &str, serde_json::Value); 7] = [
        (
            "families/dinov2_reg_cls",
            &[],
            "hugging_face",
            "dinov2_registers",
            serde_json::json!({"registers": 2, "prefix_tokens": 3, "layer_scale": true, "pool": "cls_mean_patch", "embedding": false}),
        ),
        (
            "families/dinov2",
            &[],
            "hugging_face",
            "dinov2",
            serde_json::json!({"embedding": true, "layer_scale": true, "pool": "cls"}),
        ),
        (
            "families/clip",
            &[],
            "hugging_face",
            "clip",
            serde_json::json!({"gelu": "quick", "pre_norm": true, "embedding": true}),
        ),
        (
            "families/deit_distilled",
            &[],
            "hugging_face",
            "deit_distilled",
            serde_json::json!({"pool": "cls_dist", "prefix_tokens": 2}),
        ),
        (
            "families/timm_clip.safetensors",
            &["--heads", "4", "--gelu", "quick"],
            "timm",
            "clip",
            serde_json::json!({"gelu": "quick", "pre_norm": true, "ln_eps": 1e-5}),
        ),
        (
            "families/open_clip",
            &[],
            "open_clip",
            "clip",
            serde_json::json!({"gelu": "quick", "pre_norm": true, "heads": 4, "embedding": true}),
        ),
        (
            "families/open_clip_ls.safetensors",
            &["--heads", "4"],
            "open_clip",
            "clip",
            serde_json::json!({"layer_scale": true, "pre_norm": false, "gelu": "erf"}),
        ),
    ];
    for (rel, flags, layout, family, want) in cases {
        let model = fixture(rel);
        let model = model.to_str().unwrap();
        let inspect = |json: &[&str]| {
            run_bin(
                ["inspect", "--model", model]
                    .iter()
                    .chain(json)
                    .chain(flags),
            )
        };
        let v: serde_json::Value = serde_json::from_slice(&inspect(&["--json"])).unwrap();
        assert_eq!(v["layout"], layout, "{rel}");
        assert_eq!(v["family"], family, "{rel}");
        for (k, w) in want.as_object().unwrap() {
            assert_eq!(&v["config"][k], w, "{rel}: config.{k}");
        }
        // The text form names the family and the options too.
        let text = inspect(&[]);
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains("family"), "{rel}: {text}");
        assert!(text.contains("layer_scale"), "{rel}: {text}");
    }
}

#[test]
fn f32_outputs_follow_f64() {
    for rel in [
        "families/dinov2",
        "families/dinov2_reg_cls",
        "families/clip",
        "families/deit_distilled",
    ] {
        let x = npy("families/input.npy");
        let out = |dtype| {
            let mut o = f64_opts();
            o.dtype = dtype;
            let m = load_model(&fixture(rel), &o).unwrap().model;
            rows2(&m.forward(&x, &[], None, Mode::Frozen).unwrap().logits)
        };
        for (a, b) in out(DType::F32).iter().zip(&out(DType::F64)) {
            assert_close(a, b, 1e-4, rel);
        }
    }
}

/// Copies a fixture folder into a temporary one, for damaging.
fn scratch(rel: &str, name: &str) -> std::path::PathBuf {
    let dst = std::env::temp_dir().join(format!("np-families-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(fixture(rel)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

/// Rewrites a folder's model.safetensors without the tensors `drop` selects (or with one
/// reshaped).
fn rewrite(dir: &Path, edit: impl Fn(&str, Tensor) -> Option<Tensor>) {
    rewrite_file(&dir.join("model.safetensors"), edit)
}

/// [`rewrite`] of one safetensors file.
fn rewrite_file(st: &Path, edit: impl Fn(&str, Tensor) -> Option<Tensor>) {
    let t = candle_core::safetensors::load(st, &candle_core::Device::Cpu).unwrap();
    let kept: std::collections::HashMap<String, Tensor> = t
        .into_iter()
        .filter_map(|(k, v)| edit(&k, v).map(|v| (k, v)))
        .collect();
    candle_core::safetensors::save(&kept, st).unwrap();
}

fn one_line_error(dir: &Path) -> String {
    // timm and bare open_clip files do not record the head count.
    let opts = LoadOptions {
        heads: Some(4),
        ..f64_opts()
    };
    let err = match load_model(dir, &opts) {
        Ok(_) => panic!("{}: loaded a damaged checkpoint", dir.display()),
        Err(e) => e.to_string(),
    };
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(
        err.contains(&dir.display().to_string()),
        "names the folder: {err}"
    );
    err
}

#[test]
fn partial_or_wrong_checkpoints_name_the_file_and_the_tensor() {
    let cases: [(&str, &str, &str); 5] = [
        (
            "families/dinov2",
            "encoder.layer.1.layer_scale2.lambda1",
            "missing",
        ),
        ("families/dinov2_reg_cls", "classifier.weight", "shape"),
        ("families/clip", "pre_layrnorm.weight", "missing"),
        (
            "families/clip_proj",
            "vision_model.encoder.layers.2.self_attn.k_proj.bias",
            "missing",
        ),
        (
            "families/deit_distilled",
            "distillation_classifier.bias",
            "missing",
        ),
    ];
    for (i, (rel, tensor, how)) in cases.iter().enumerate() {
        let dir = scratch(rel, &format!("case{i}"));
        rewrite(&dir, |k, v| match (k == *tensor, *how) {
            (false, _) => Some(v),
            (true, "missing") => None,
            (true, _) => Some(v.narrow(1, 0, 3).unwrap()),
        });
        let err = one_line_error(&dir);
        assert!(err.contains(tensor), "{rel}: names `{tensor}`: {err}");
        assert!(
            err.contains("model.safetensors"),
            "{rel}: names the file: {err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    // A DINOv2 config that asks for the SwiGLU MLP names the option.
    let dir = scratch("families/dinov2", "swiglu");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"use_swiglu_ffn\": false", "\"use_swiglu_ffn\": true"),
    )
    .unwrap();
    assert!(one_line_error(&dir).contains("use_swiglu_ffn"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn partial_or_wrong_timm_and_open_clip_files_name_the_file_and_the_tensor() {
    let dir = scratch("families/open_clip", "files");
    // (file, tensor, how): a whole last block's norm missing is a missing tensor, not a shorter
    // model.
    let cases = [
        ("timm_clip.safetensors", "blocks.2.norm1.weight", "missing"),
        (
            "timm_deit_distilled.safetensors",
            "head_dist.bias",
            "missing",
        ),
        (
            "open_clip_ls.safetensors",
            "transformer.resblocks.1.ls_2.gamma",
            "missing",
        ),
        (
            "open_clip_ls.safetensors",
            "transformer.resblocks.0.attn.in_proj_weight",
            "shape",
        ),
    ];
    for (i, (file, tensor, how)) in cases.iter().enumerate() {
        let f = dir.join(format!("case{i}-{file}"));
        std::fs::copy(fixture(&format!("families/{file}")), &f).unwrap();
        rewrite_file(&f, |k, v| match (k == *tensor, *how) {
            (false, _) => Some(v),
            (true, "missing") => None,
            (true, _) => Some(v.narrow(1, 0, 3).unwrap()),
        });
        let err = one_line_error(&f);
        assert!(err.contains(tensor), "{file}: names `{tensor}`: {err}");
    }
    // An open_clip folder whose config asks for ln_pre, with weights (preferred safetensors)
    // lacking it; a config with more blocks than the weights; an attentional pooler.
    std::fs::copy(
        fixture("families/open_clip_ls.safetensors"),
        dir.join("open_clip_model.safetensors"),
    )
    .unwrap();
    let err = one_line_error(&dir);
    assert!(
        err.contains("open_clip_model.safetensors") && err.contains("`ln_pre.weight`"),
        "{err}"
    );
    std::fs::remove_file(dir.join("open_clip_model.safetensors")).unwrap();
    let cfg_path = dir.join("open_clip_config.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, cfg.replace("\"layers\": 3", "\"layers\": 4")).unwrap();
    let err = one_line_error(&dir);
    assert!(
        err.contains("open_clip_pytorch_model.bin")
            && err.contains("visual.transformer.resblocks.3.ln_1.weight"),
        "{err}"
    );
    std::fs::write(
        &cfg_path,
        cfg.replace(
            "\"patch_size\": 7",
            "\"patch_size\": 7, \"attentional_pool\": true",
        ),
    )
    .unwrap();
    let err = one_line_error(&dir);
    assert!(
        err.contains("open_clip_config.json") && err.contains("attentional_pool"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `neuronpath ARGS`, which must succeed: its stdout.
fn run_bin(args: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>) -> Vec<u8> {
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().into()).collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_neuronpath"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn predict_json_prints_a_headless_models_embedding() {
    let (model, x) = (
        fixture("families/clip_proj_bin"),
        fixture("families/input.npy"),
    );
    let args = ["predict", "--json", "--dtype", "f64", "--model"];
    let out = run_bin(
        args.map(std::ffi::OsStr::new)
            .iter()
            .chain([model.as_os_str(), x.as_os_str()].iter()),
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let want = vec2(&json("families/expected.json")["clip_proj"]["output"]);
    for (img, w) in v["images"].as_array().unwrap().iter().zip(&want) {
        assert_close(
            &vec1(&img["embedding"]),
            w,
            1e-10,
            "predict --json embedding",
        );
    }
}
