//! The engine against values produced by the authors' code (tests/fixtures/golden).
mod common;
use candle_core::DType;
use common::*;
use neuronpath::model::{LoadOptions, Mode, Rows};

fn check_clean(dtype: DType, key: &str, tol: f64) {
    let model = load("golden/tiny_vit.npz", dtype);
    let gold = json("golden/expected_vit.json");
    let x = npy("golden/input_x.npy");
    let out = model
        .forward(&x, &[], Some(Rows::Cls), Mode::Frozen)
        .unwrap();
    let probs = to_vec2(&neuronpath::model::ops::softmax(&out.logits, Mode::Frozen).unwrap());
    let want = vec2(&gold[key]["clean_probs"]);
    for (g, w) in probs.iter().zip(&want) {
        assert_close(g, w, tol, "clean probabilities");
    }
    let acts = gold[key]["clean_cls_ffn_activations"].as_array().unwrap();
    for (l, layer) in acts.iter().enumerate() {
        let got = to_vec2(&out.hidden[l]);
        for (img, w) in vec2(layer).iter().enumerate() {
            assert_close(
                &got[img],
                w,
                tol,
                &format!("activations layer {l} image {img}"),
            );
        }
    }
}

#[test]
fn clean_pass_f64_matches_reference() {
    check_clean(DType::F64, "vit_f64", 1e-10);
}

#[test]
fn clean_pass_f32_matches_reference() {
    check_clean(DType::F32, "vit_f32", 1e-5);
}

#[test]
fn train_mode_ops_match_frozen_ops() {
    let model = load("golden/tiny_vit.npz", DType::F64);
    let x = npy("golden/input_x.npy");
    let a = model
        .forward(&x, &[], Some(Rows::Cls), Mode::Frozen)
        .unwrap();
    let b = model
        .forward(&x, &[], Some(Rows::Cls), Mode::Train)
        .unwrap();
    for (ra, rb) in to_vec2(&a.logits).iter().zip(to_vec2(&b.logits)) {
        assert_close(ra, &rb, 1e-12, "logits");
    }
}

#[test]
fn position_embedding_resize_matches_scipy_zoom() {
    let opts = LoadOptions {
        dtype: DType::F64,
        image_size: Some(32),
        ..Default::default()
    };
    let model = load_with("golden/tiny_vit_posemb3x3.npz", &opts);
    assert_eq!(model.cfg.grid(), 2);
    let want = &json("golden/expected_vit.json")["posemb_resized_from_3x3"][0];
    let got = to_vec2(&model.pos);
    for (g, w) in got.iter().zip(vec2(want)) {
        assert_close(g, &w, 1e-12, "resized position embedding");
    }
}

#[test]
fn mae_double_fc_norm_matches_reference() {
    let opts = LoadOptions {
        dtype: DType::F64,
        double_fc_norm: true,
        heads: Some(4),
        ..Default::default()
    };
    let model = load_with("golden/tiny_mae_state_dict.npz", &opts);
    assert_eq!(model.cfg.pool, neuronpath::model::Pool::MeanPatch);
    let x = npy("golden/input_x.npy");
    let probs = to_vec2(&model.probabilities(&x, &[]).unwrap());
    let want = vec2(&json("golden/expected_mae.json")["clean_probs_double_fc_norm"]);
    for (g, w) in probs.iter().zip(&want) {
        assert_close(g, w, 1e-10, "MAE probabilities (double fc_norm)");
    }
}
