//! The method (search, JAS, baselines, manipulation) against the authors' code's values.
mod common;
use candle_core::{DType, Tensor};
use common::*;
use neuronpath::attribution::baselines::activation_sets;
use neuronpath::attribution::jas::set_probabilities;
use neuronpath::attribution::{
    clean_pass, joint_attribution, layer_progressive_search, AttributionSettings,
};
use neuronpath::model::{LoadOptions, Rows, Vit};
use serde_json::Value;

fn settings(rows: Rows) -> AttributionSettings {
    AttributionSettings {
        steps: 20,
        top_k: 1,
        compat: false,
        rows,
        chunk_rows: 1000,
        engine: Default::default(),
    }
}

/// `[layer][image]` -> `[image][layer]`.
fn paths(v: &Value) -> Vec<Vec<usize>> {
    let lm: Vec<Vec<usize>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect()
        })
        .collect();
    (0..lm[0].len())
        .map(|i| lm.iter().map(|l| l[i]).collect())
        .collect()
}

struct Run {
    path: Vec<Vec<usize>>,
    base: Vec<Vec<usize>>,
    scores: Vec<Vec<Vec<f64>>>,
    jas_path: Vec<f64>,
    jas_base: Vec<f64>,
    clean: Vec<f64>,
    remove: Vec<f64>,
    enhance: Vec<f64>,
}

fn run(model: &Vit, x: &Tensor, s: &AttributionSettings) -> Run {
    let targets = vec![3usize, 3];
    let (probs, acts) = clean_pass(model, x, s.rows).unwrap();
    let clean: Vec<f64> = probs.iter().map(|p| p[3]).collect();
    let found = layer_progressive_search(model, x, &targets, &acts, s).unwrap();
    let base = activation_sets(&acts, 1);
    let jas_p = joint_attribution(model, x, &targets, &acts, &found.sets, &clean, s).unwrap();
    let jas_b = joint_attribution(model, x, &targets, &acts, &base, &clean, s).unwrap();
    let flat = |sets: &[Vec<Vec<usize>>]| -> Vec<Vec<usize>> {
        sets.iter()
            .map(|p| p.iter().map(|l| l[0]).collect())
            .collect()
    };
    Run {
        path: flat(&found.sets),
        base: flat(&base),
        scores: found.scores,
        jas_path: jas_p.iter().map(|j| j.reference).collect(),
        jas_base: jas_b.iter().map(|j| j.reference).collect(),
        remove: set_probabilities(model, x, &targets, &found.sets, 0.0, s).unwrap(),
        enhance: set_probabilities(model, x, &targets, &found.sets, 2.0, s).unwrap(),
        clean,
    }
}

fn check_scores(got: &[Vec<Vec<f64>>], want: &Value, tol: f64) {
    for (l, layer) in want.as_array().unwrap().iter().enumerate() {
        for (i, w) in vec2(layer).iter().enumerate() {
            assert_close(
                &got[i][l],
                w,
                tol,
                &format!("selection scores layer {l} image {i}"),
            );
        }
    }
}

#[test]
fn vit_f64_search_jas_and_manipulation_match_reference() {
    let model = load("golden/tiny_vit.npz", DType::F64);
    let x = npy("golden/input_x.npy").to_dtype(DType::F64).unwrap();
    let g = &json("golden/expected_vit.json")["vit_f64"];
    let r = run(&model, &x, &settings(Rows::Cls));
    check_scores(&r.scores, &g["selection_scores"], 1e-9);
    assert_eq!(r.path, paths(&g["path"]));
    assert_eq!(r.base, paths(&g["base_path"]));
    assert_close(&r.jas_path, &vec1(&g["jas_path"]), 1e-9, "JAS of the path");
    assert_close(
        &r.jas_base,
        &vec1(&g["jas_base_path"]),
        1e-9,
        "JAS of the activation path",
    );
    assert_close(&r.clean, &vec1(&g["prob_gt_clean"]), 1e-10, "clean F");
    assert_close(
        &r.remove,
        &vec1(&g["prob_gt_remove_path"]),
        1e-10,
        "F with the path removed",
    );
    assert_close(
        &r.enhance,
        &vec1(&g["prob_gt_enhance_path"]),
        1e-10,
        "F with the path enhanced",
    );
}

#[test]
fn vit_f32_paths_agree_and_scores_within_tolerance() {
    let model = load("golden/tiny_vit.npz", DType::F32);
    let x = npy("golden/input_x.npy");
    let g = &json("golden/expected_vit.json")["vit_f32"];
    let r = run(&model, &x, &settings(Rows::Cls));
    check_scores(&r.scores, &g["selection_scores"], 1e-4);
    assert_eq!(r.path, paths(&g["path"]));
    assert_eq!(r.base, paths(&g["base_path"]));
    assert_close(&r.jas_path, &vec1(&g["jas_path"]), 1e-4, "JAS of the path");
}

#[test]
fn mae_variant_matches_reference() {
    let opts = LoadOptions {
        dtype: DType::F64,
        double_fc_norm: true,
        heads: Some(4),
        ..Default::default()
    };
    let model = load_with("golden/tiny_mae_state_dict.npz", &opts);
    let x = npy("golden/input_x.npy").to_dtype(DType::F64).unwrap();
    let g = json("golden/expected_mae.json");
    let mut s = settings(Rows::Patches);
    s.compat = true;
    let r = run(&model, &x, &s);
    check_scores(&r.scores, &g["selection_scores"], 1e-9);
    assert_eq!(r.path, paths(&g["path"]));
    assert_eq!(r.base, paths(&g["base_path"]));
    assert_close(
        &r.jas_path,
        &vec1(&g["jas_path_div196"]),
        1e-9,
        "MAE JAS / 196",
    );
    assert_close(
        &r.jas_base,
        &vec1(&g["jas_base_path_div196"]),
        1e-9,
        "MAE base JAS / 196",
    );
    assert_close(&r.clean, &vec1(&g["prob_gt_clean"]), 1e-10, "MAE clean F");
    assert_close(
        &r.remove,
        &vec1(&g["prob_gt_remove_path"]),
        1e-10,
        "MAE F removed",
    );
    assert_close(
        &r.enhance,
        &vec1(&g["prob_gt_enhance_path"]),
        1e-10,
        "MAE F enhanced",
    );
}
