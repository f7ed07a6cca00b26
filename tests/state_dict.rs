//! `from_state_dict`: a model from tensors in memory (timm names, Hugging Face file names and
//! transformers 5's in-memory names) equals the model loaded from the checkpoint file.
mod common;
use candle_core::{DType, Device, Tensor};
use common::{fixture, npy};
use neuronpath::model::load::{from_state_dict, Loaded};
use neuronpath::model::{load_model, LoadOptions};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

fn opts(heads: Option<usize>) -> LoadOptions {
    LoadOptions {
        dtype: DType::F64,
        heads,
        ..Default::default()
    }
}

fn tensors(rel: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(rel), &Device::Cpu).unwrap()
}

fn probs(l: &Loaded) -> Vec<Vec<f64>> {
    let x = npy("loaders/input.npy").to_dtype(DType::F64).unwrap();
    l.model
        .probabilities(&x, &[])
        .unwrap()
        .to_vec2::<f64>()
        .unwrap()
}

fn same(a: &Loaded, b: &Loaded) {
    assert_eq!(a.model.cfg, b.model.cfg);
    assert_eq!(a.class_names, b.class_names);
    assert_eq!(probs(a), probs(b), "bit-identical probabilities");
}

#[test]
fn timm_names_equal_the_loaded_file() {
    let file = load_model(&fixture("loaders/timm_vit.safetensors"), &opts(Some(4))).unwrap();
    let label = Path::new("state_dict");
    let mem = from_state_dict(
        label,
        tensors("loaders/timm_vit.safetensors"),
        &json!({"num_heads": 4, "url": "ignored"}),
        &opts(None),
    )
    .unwrap();
    same(&mem, &file);
    assert_eq!(mem.neuron_modules[2], "blocks.2.mlp.act");
}

#[test]
fn hugging_face_file_and_transformers5_names_equal_the_loaded_folder() {
    let file = load_model(&fixture("loaders/hf_vit"), &opts(None)).unwrap();
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("loaders/hf_vit/config.json")).unwrap(),
    )
    .unwrap();
    let classic = tensors("loaders/hf_vit/model.safetensors");
    let mem = from_state_dict(Path::new("sd"), classic.clone(), &config, &opts(None)).unwrap();
    same(&mem, &file);
    assert_eq!(mem.neuron_modules[1], "vit.encoder.layer.1.intermediate");
    // transformers 5 names the same tensors `vit.layers.N.attention.q_proj.*`, `.mlp.fc1.*`, ...
    let renamed: HashMap<String, Tensor> = classic
        .into_iter()
        .map(|(k, t)| {
            let k = k
                .replace("vit.encoder.layer.", "vit.layers.")
                .replace("attention.attention.query.", "attention.q_proj.")
                .replace("attention.attention.key.", "attention.k_proj.")
                .replace("attention.attention.value.", "attention.v_proj.")
                .replace("attention.output.dense.", "attention.o_proj.")
                .replace("intermediate.dense.", "mlp.fc1.")
                .replace("output.dense.", "mlp.fc2.");
            (k, t)
        })
        .collect();
    assert!(renamed.contains_key("vit.layers.0.mlp.fc2.weight"));
    let mem5 = from_state_dict(Path::new("sd"), renamed, &config, &opts(None)).unwrap();
    same(&mem5, &file);
    assert_eq!(mem5.neuron_modules[1], "vit.layers.1.mlp.activation_fn");
}

#[test]
fn bad_state_dicts_are_one_line_errors() {
    let err = |t: HashMap<String, Tensor>, c: serde_json::Value| {
        from_state_dict(Path::new("sd"), t, &c, &opts(None))
            .err()
            .expect("an error")
            .to_string()
    };
    let mut t = tensors("loaders/timm_vit.safetensors");
    t.remove("blocks.1.mlp.fc2.bias");
    let e = err(t, json!({"num_heads": 4}));
    assert!(e.contains("missing tensor `blocks.1.mlp.fc2.bias`"), "{e}");
    let t = tensors("loaders/timm_vit.safetensors");
    for (config, want) in [
        (
            json!({"num_heads": -2}),
            "`num_heads` must be a positive integer",
        ),
        (
            json!({"num_heads": 4, "global_pool": "max"}),
            "`global_pool` `max`",
        ),
        (
            json!({"num_heads": 4, "std": [1, 1, 1]}),
            "a std without a mean",
        ),
        (
            json!({"num_heads": 4, "id2label": {"0": "a", "2": "b"}}),
            "`id2label` must map",
        ),
        (json!([1, 2]), "must be a JSON object"),
    ] {
        let e = err(t.clone(), config);
        assert!(e.contains(want), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
    let e = err(HashMap::new(), json!({}));
    assert!(e.contains("neither timm"), "{e}");
}
