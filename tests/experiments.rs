//! Experiments (manipulation, atlas, pruning, report) on the tiny golden model.
mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use neuronpath::attribution::discover::{ImageResult, MethodResult};
use neuronpath::attribution::jas::set_probabilities;
use neuronpath::attribution::{AttributionSettings, Jas};
use neuronpath::experiments::manipulation::{self, edited_probabilities, run_manipulation};
use neuronpath::experiments::pruning::{self, kept_set, mask_edits, masks, pruned_model};
use neuronpath::experiments::{atlas, checkpoint, stats};
use neuronpath::io::inputs::{gather, Preprocess};
use neuronpath::io::preprocess::Normalization;
use neuronpath::io::results::{ImageRecord, Method, Results};
use neuronpath::model::{load_model, LoadOptions, Rows, Vit};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_neuronpath");
const IMAGES: usize = 12;

fn model() -> Vit {
    load("golden/tiny_vit.npz", DType::F64)
}

/// A scratch folder under the target folder, emptied the first time this process asks for it
/// (outputs of earlier runs or versions are not this run's to replace).
fn tmp(name: &str) -> PathBuf {
    static FRESH: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("experiments")
        .join(name);
    let mut fresh = FRESH.lock().unwrap();
    if !fresh.iter().any(|n| n == name) {
        let _ = std::fs::remove_dir_all(&d);
        fresh.push(name.to_string());
    }
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Deterministic pseudo-random images (N, 3, 32, 32), no RNG dependency.
fn images(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n * 3 * 32 * 32)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64 * 4.0 - 2.0) as f32
        })
        .collect()
}

fn tensor(n: usize, seed: u64) -> Tensor {
    Tensor::from_vec(images(n, seed), (n, 3, 32, 32), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
}

fn run_bin(args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "neuronpath {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One discover run shared by the tests: 12 images of classes 0..2, top-3 sets, all baselines.
fn discovered() -> &'static (PathBuf, PathBuf) {
    static RUN: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tmp("discover");
        let x = dir.join("x.npy");
        Tensor::from_vec(images(IMAGES, 1), (IMAGES, 3, 32, 32), &Device::Cpu)
            .unwrap()
            .write_npy(&x)
            .unwrap();
        let labels: Vec<usize> = (0..IMAGES).map(|i| i % 3).collect();
        std::fs::write(dir.join("y.json"), serde_json::to_string(&labels).unwrap()).unwrap();
        let out = dir.join("d.jsonl");
        let _ = std::fs::remove_file(&out);
        let m = fixture("golden/tiny_vit.npz");
        let (xs, ys, os, ms) = (
            x.to_str().unwrap(),
            dir.join("y.json"),
            out.to_str().unwrap(),
            m.to_str().unwrap(),
        );
        run_bin(&[
            "discover",
            "--model",
            ms,
            xs,
            "--labels",
            ys.to_str().unwrap(),
            "--out",
            os,
            "--dtype",
            "f64",
            "--top-k",
            "3",
            "--steps",
            "5",
            "--methods",
            "path,activation,influence,random",
        ]);
        (out, x)
    })
}

fn items(x: &Path) -> BTreeMap<u64, neuronpath::io::inputs::Item> {
    let y = x.with_file_name("y.json");
    gather(&[x.to_path_buf()], Some(&y))
        .unwrap()
        .items
        .into_iter()
        .map(|i| (i.index, i))
        .collect()
}

fn pre() -> Preprocess {
    Preprocess {
        size: 32,
        norm: Normalization::ImageNet,
    }
}

#[test]
fn edited_probabilities_agree_with_set_probabilities() {
    let (m, x) = (model(), tensor(3, 7));
    let sets = vec![
        vec![vec![3], vec![10], vec![63], vec![0]],
        vec![vec![1, 2], vec![5], vec![7, 8], vec![9]],
        vec![vec![40], vec![41], vec![42], vec![43]],
    ];
    let targets = [3, 0, 9];
    let s = AttributionSettings {
        steps: 5,
        top_k: 1,
        compat: false,
        rows: Rows::Cls,
        chunk_rows: 100,
        engine: Default::default(),
    };
    for f in [0.0, 0.5, 2.0] {
        let full = edited_probabilities(&m, &x, &sets, f, Rows::Cls).unwrap();
        let want = set_probabilities(&m, &x, &targets, &sets, f, &s).unwrap();
        for ((p, t), w) in full.iter().zip(targets).zip(want) {
            assert_eq!(p[t], w, "factor {f}");
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }
}

#[test]
fn manipulation_reproduces_discover_records() {
    let (results, x) = discovered();
    let run = Results::open(results).unwrap();
    assert_eq!(run.images.len(), IMAGES);
    let s = manipulation::ManipulationSettings {
        factors: vec![0.0, 2.0, 1.0],
        all_k: true,
        batch: 5,
        ..Default::default()
    };
    let m = run_manipulation(&model(), &run, &items(x), &pre(), &s, &mut |_| {}).unwrap();
    assert!(!m.random_generated);
    for (o, r) in m.images.iter().zip(&run.images) {
        assert_eq!(o.index, r.index);
        assert!((o.clean_prob - r.result.prob_target).abs() < 1e-12);
        for (name, rec) in &r.result.methods {
            let e = &o.methods[name];
            assert_eq!(e.len(), 3);
            assert!(
                (e[0].prob - rec.prob_removed).abs() < 1e-12,
                "{name} removed"
            );
            assert!(
                (e[1].prob - rec.prob_enhanced).abs() < 1e-12,
                "{name} enhanced"
            );
            assert_eq!(e[2].prob, o.clean_prob, "factor 1 is the clean pass");
        }
    }
    // Overall deviation: mean of per-image ratios; accuracy deviation of factor 1 is zero.
    let d = m.overall_for(Method::Path, 0.0).unwrap();
    let ratios: Vec<f64> = m
        .images
        .iter()
        .map(|o| o.methods[&Method::Path][0].prob / o.clean_prob)
        .collect();
    assert!((d.ratio.mean - stats::mean(&ratios)).abs() < 1e-12);
    assert!(d.ratio.ci_low <= d.ratio.mean && d.ratio.mean <= d.ratio.ci_high);
    assert_eq!(
        m.overall_for(Method::Random, 1.0).unwrap().acc_deviation,
        0.0
    );
    assert_eq!(m.per_class.len(), 4 * 3 * 3);
}

#[test]
fn pruning_with_p0_equals_the_unpruned_model() {
    let (m, x) = (model(), tensor(4, 3));
    let keep: Vec<Vec<usize>> = vec![vec![1, 2], vec![3], vec![4], vec![5]];
    let clean = to_vec2(&m.probabilities(&x, &[]).unwrap());
    for d in [1, 3, 4] {
        let mk = masks(64, &keep, 0.0, d, 9, 2);
        assert!(mk.iter().flatten().all(|v| v.iter().all(|&x| x == 1.0)));
        let edits = mask_edits(&m, &mk, 4).unwrap();
        assert_eq!(
            to_vec2(&m.probabilities(&x, &edits).unwrap()),
            clean,
            "d = {d}"
        );
        let pm = pruned_model(&m, &mk).unwrap();
        assert_eq!(
            to_vec2(&pm.probabilities(&x, &[]).unwrap()),
            clean,
            "d = {d} (cls_mask)"
        );
    }
}

#[test]
fn masks_prune_the_right_neurons() {
    let keep: Vec<Vec<usize>> = vec![vec![0, 1, 2], vec![7], vec![8], vec![9]];
    let small = masks(64, &keep, 0.3, 3, 5, 1);
    let large = masks(64, &keep, 0.6, 4, 5, 1);
    assert!(small[3].is_none() && large[3].is_some());
    for l in 0..3 {
        let (s, g) = (small[l].as_ref().unwrap(), large[l].as_ref().unwrap());
        let others = 64 - keep[l].len();
        assert_eq!(
            s.iter().filter(|&&v| v == 0.0).count(),
            (0.3 * others as f64).round() as usize
        );
        assert_eq!(
            g.iter().filter(|&&v| v == 0.0).count(),
            (0.6 * others as f64).round() as usize
        );
        assert!(
            keep[l].iter().all(|&n| s[n] == 1.0 && g[n] == 1.0),
            "kept neurons are never pruned"
        );
        assert!(
            (0..64).all(|n| s[n] == 1.0 || g[n] == 0.0),
            "larger p prunes a superset"
        );
    }
    let all = masks(64, &keep, 1.0, 4, 5, 1);
    assert_eq!(all[1].as_ref().unwrap().iter().sum::<f64>(), 1.0);
}

#[test]
fn pruned_checkpoint_reloads_as_the_in_memory_pruning() {
    let (m, x) = (model(), tensor(5, 11));
    let keep: Vec<Vec<usize>> = vec![vec![3, 4], vec![10, 11], vec![20, 21], vec![30, 31]];
    let mk = masks(64, &keep, 0.5, 3, 1, 0);
    let in_memory = to_vec2(
        &m.probabilities(&x, &mask_edits(&m, &mk, 5).unwrap())
            .unwrap(),
    );
    let clean = to_vec2(&m.probabilities(&x, &[]).unwrap());
    assert!(
        max_rel(&in_memory.concat(), &clean.concat()) > 1e-6,
        "pruning changes the outputs"
    );
    let path = tmp("checkpoint").join("pruned.safetensors");
    checkpoint::save_timm(
        &pruned_model(&m, &mk).unwrap(),
        &path,
        &serde_json::json!({}),
    )
    .unwrap();
    assert_eq!(
        checkpoint::load_flags(&m.cfg),
        vec!["--heads 4".to_string()]
    );
    let opts = LoadOptions {
        dtype: DType::F64,
        heads: Some(4),
        ..Default::default()
    };
    let loaded = load_model(&path, &opts).unwrap();
    assert_eq!(loaded.model.cfg, m.cfg);
    let reloaded = to_vec2(&loaded.model.probabilities(&x, &[]).unwrap());
    assert_close(
        &reloaded.concat(),
        &in_memory.concat(),
        1e-12,
        "reloaded pruned checkpoint",
    );
    // Without masks the written file is the model itself.
    let plain = tmp("checkpoint").join("plain.safetensors");
    checkpoint::save_timm(&m, &plain, &serde_json::json!({})).unwrap();
    let back = load_model(&plain, &opts).unwrap().model;
    assert_eq!(to_vec2(&back.probabilities(&x, &[]).unwrap()), clean);
}

fn record(
    index: u64,
    label: usize,
    path: Vec<usize>,
    sets: Option<Vec<Vec<usize>>>,
) -> ImageRecord {
    let mr = MethodResult {
        path,
        sets,
        jas: Jas {
            reference: 1.0,
            additive: 0.5,
            delta: 0.0,
        },
        prob_removed: 0.1,
        prob_enhanced: 0.9,
        margins: None,
        neurons: None,
    };
    ImageRecord {
        index,
        source: format!("img{index}"),
        image: None,
        result: ImageResult {
            label: Some(label),
            target: label,
            prediction: label,
            prob_target: 0.5,
            prob_prediction: 0.5,
            methods: BTreeMap::from([(Method::Path, mr)]),
        },
    }
}

#[test]
fn kept_set_takes_the_most_frequent_neuron_per_rank() {
    let sets = |a: [usize; 2], b: [usize; 2]| Some(vec![a.to_vec(), b.to_vec()]);
    let recs = [
        record(0, 0, vec![1, 5], sets([1, 2], [5, 6])),
        record(1, 0, vec![1, 7], sets([1, 3], [7, 6])),
        record(2, 0, vec![4, 7], sets([4, 3], [7, 5])),
    ];
    let refs: Vec<&ImageRecord> = recs.iter().collect();
    assert_eq!(kept_set(&refs, 1, 2), vec![vec![1], vec![7]]);
    assert_eq!(kept_set(&refs, 2, 2), vec![vec![1, 3], vec![7, 6]]);
    // Rank 1's winner equal to rank 0's appears once.
    let dup = [record(0, 0, vec![1, 5], sets([1, 1], [5, 5]))];
    assert_eq!(
        kept_set(&dup.iter().collect::<Vec<_>>(), 2, 2),
        vec![vec![1], vec![5]]
    );
}

#[test]
fn atlas_counts_and_similarity() {
    let names: Vec<String> = (0..4).map(|c| format!("c{c}")).collect();
    let paths = vec![
        (0, vec![1, 2, 3]),
        (0, vec![1, 5, 3]),
        (1, vec![1, 5, 3]),
        (1, vec![1, 2, 3]),
        (2, vec![7, 8, 9]),
        (3, vec![1, 8, 9]),
    ];
    let a = atlas::build(Method::Path, &paths, 3, 10, &names).unwrap();
    assert_eq!(a.classes.len(), 4);
    let c0 = &a.classes[0];
    assert_eq!(c0.images, 2);
    assert_eq!(c0.counts[0], BTreeMap::from([(1, 2)]));
    assert_eq!(c0.counts[1], BTreeMap::from([(2, 1), (5, 1)]));
    assert_eq!(c0.values(1), vec![2, 5]);
    assert_eq!(c0.modal_path, vec![(1, 2), (2, 1), (3, 2)]);
    assert!(
        (a.sim(0, 1).unwrap() - 1.0).abs() < 1e-12,
        "identical classes"
    );
    assert_eq!(a.sim(0, 2).unwrap(), 0.0, "disjoint classes");
    // c3 = [1,8,9] vs c2 = [7,8,9]: 2 shared of 3 -> 2/3; vs c0: one shared count of 2 -> 2/(sqrt(3)*sqrt(10)).
    assert!((a.sim(2, 3).unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert!((a.sim(0, 3).unwrap() - 2.0 / (3f64.sqrt() * 10f64.sqrt())).abs() < 1e-12);
    assert_eq!(c0.most_similar.unwrap().class, 1);
    assert_eq!(c0.least_similar.unwrap().class, 2);
    assert_eq!(a.classes[2].most_similar.unwrap().class, 3);
    assert!(atlas::build(Method::Path, &[(0, vec![1, 99, 3])], 3, 10, &names).is_err());
}

#[test]
fn statistics() {
    let s = stats::spread(&[4.0, 1.0, 3.0, 2.0, f64::NAN], 200, 1);
    assert_eq!(
        (s.n, s.min, s.max, s.median, s.q1, s.q3),
        (4, 1.0, 4.0, 2.5, 1.75, 3.25)
    );
    assert!(s.ci_low >= 1.0 && s.ci_high <= 4.0 && s.ci_low < s.ci_high);
    assert_eq!(stats::cosine(&[1.0, 0.0], &[0.0, 2.0]), Some(0.0));
    assert_eq!(stats::cosine(&[0.0, 0.0], &[1.0, 2.0]), None);
    assert!(
        (stats::spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 25.0, 40.0]).unwrap() - 1.0).abs()
            < 1e-12
    );
}

fn html_attrs_pointing_outside(html: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for attr in ["src=", "href=", "url(", "@import"] {
        for (i, _) in html.match_indices(attr) {
            let rest = html[i + attr.len()..].trim_start_matches(['"', '\'', ' ']);
            if !(rest.starts_with('#') || rest.starts_with("data:")) {
                bad.push(html[i..(i + 60).min(html.len())].to_string());
            }
        }
    }
    bad
}

#[test]
fn report_is_self_contained_with_every_figure() {
    let (results, _) = discovered();
    let dir = tmp("report");
    let out = dir.join("report.html");
    let (r, o) = (results.to_str().unwrap(), out.to_str().unwrap());
    let m = fixture("golden/tiny_vit.npz");
    run_bin(&[
        "report",
        "--results",
        r,
        "--model",
        m.to_str().unwrap(),
        "--dtype",
        "f64",
        "--out",
        o,
    ]);
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external references"
    );
    assert!(
        html_attrs_pointing_outside(&html).is_empty(),
        "{:?}",
        html_attrs_pointing_outside(&html)
    );
    for fig in [
        "Joint Attribution Score of each method",
        "Probability deviation",
        "Accuracy deviation",
        "Class similarity",
        "Path concentration",
        "class 0: path neurons by rank",
        "Pruning: F(pruned)",
        "Pruning: top-1 accuracy",
    ] {
        assert!(
            html.contains(&format!("aria-label=\"{fig}")),
            "figure `{fig}` missing"
        );
    }
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    // Every image (12, under the detail cap): its picture, path diagram and heat maps.
    for i in 0..IMAGES {
        for part in [
            format!("id=\"img-{i}\""),
            format!("alt=\"image {i}\""),
            format!("aria-label=\"image {i}: path diagram\""),
            format!("aria-label=\"image {i}: patch heat maps\""),
        ] {
            assert!(html.contains(&part), "image {i}: `{part}` missing");
        }
    }
    for part in [
        "How to read this report",
        "arXiv:2503.09046",
        "id=\"f-class\"",
        "What the recurring neurons respond to",
    ] {
        assert!(html.contains(part), "`{part}` missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(summary["claims"].as_array().unwrap().len(), 5);
    // Without the model the report still renders from the records alone.
    run_bin(&["report", "--results", r, "--no-model", "--out", o]);
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(
        html.contains("aria-label=\"Probability deviation")
            && !html.contains("aria-label=\"Pruning")
    );
}

/// The report's maps file and per-image JAS terms: (images, L + 1, G, G), and each method's
/// per-layer terms add up to the additive JAS discover recorded for its path (top-1 run, f64).
#[test]
fn report_maps_and_jas_terms_match_the_records() {
    let (_, x) = discovered();
    let dir = tmp("report-maps");
    let out = dir.join("d1.jsonl");
    let _ = std::fs::remove_file(&out);
    let m = fixture("golden/tiny_vit.npz");
    let ys = x.with_file_name("y.json");
    run_bin(&[
        "discover",
        "--model",
        m.to_str().unwrap(),
        x.to_str().unwrap(),
        "--labels",
        ys.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--dtype",
        "f64",
        "--steps",
        "5",
        "--methods",
        "path,activation,influence",
        "--no-report",
    ]);
    let html = dir.join("r.html");
    run_bin(&[
        "report",
        "--results",
        out.to_str().unwrap(),
        "--model",
        m.to_str().unwrap(),
        "--dtype",
        "f64",
        "--no-prune",
        "--max-images",
        "5",
        "--out",
        html.to_str().unwrap(),
    ]);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    // The maps beside the report: (images, L + 1, G, G), and per image every method's JAS terms,
    // which add up to the additive JAS discover recorded.
    let maps = &summary["maps"];
    let shape: Vec<usize> = serde_json::from_value(maps["shape"].clone()).unwrap();
    assert_eq!(shape[0], 5);
    assert_eq!(shape[2], shape[3]);
    let npy = std::fs::read(dir.join(maps["file"].as_str().unwrap())).unwrap();
    let header = 10 + u16::from_le_bytes([npy[8], npy[9]]) as usize;
    assert_eq!(npy.len() - header, 8 * shape.iter().product::<usize>());
    let (_, records) = neuronpath::io::results::read_results(&out).unwrap();
    let records: BTreeMap<u64, serde_json::Value> = records
        .iter()
        .map(|r| (r.index, serde_json::to_value(r).unwrap()))
        .collect();
    let images = maps["images"].as_array().unwrap();
    assert_eq!(images.len(), 5);
    for im in images {
        let rec = &records[&im["index"].as_u64().unwrap()];
        assert_eq!(im["source"], rec["source"]);
        assert_eq!(im["maps"].as_array().unwrap().len(), shape[1]);
        for (m, terms) in im["jas_terms"].as_object().unwrap() {
            let sum: f64 = terms
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .sum();
            let want = rec["methods"][m]["jas"]["additive"].as_f64().unwrap();
            assert!(
                (sum - want).abs() <= 1e-9 * want.abs().max(1e-6),
                "image {}, {m}: terms sum to {sum}, additive JAS {want}",
                im["index"]
            );
        }
    }
    // Five detailed of twelve: the page says so and links only those.
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("aria-label=\"image ").count(), 10);
    assert!(page.contains("5 of them are shown in detail"));
}

#[test]
fn ablate_atlas_prune_commands() {
    let (results, x) = discovered();
    let dir = tmp("commands");
    let (r, m) = (results.to_str().unwrap(), fixture("golden/tiny_vit.npz"));
    let ms = m.to_str().unwrap();
    let ab = dir.join("ablate");
    run_bin(&[
        "ablate",
        "--results",
        r,
        "--model",
        ms,
        "--dtype",
        "f64",
        "--factors",
        "0,0.5,2",
        "--out",
        ab.to_str().unwrap(),
    ]);
    let man: manipulation::Manipulation =
        serde_json::from_str(&std::fs::read_to_string(ab.join("manipulation.json")).unwrap())
            .unwrap();
    assert_eq!(man.settings.factors, vec![0.0, 0.5, 2.0]);
    assert!(ab.join("deviation.svg").exists() && ab.join("manipulation_summary.csv").exists());
    // The per-image CSV names each image's source and class, matching the results records.
    let sources: std::collections::BTreeMap<u64, String> = std::fs::read_to_string(r)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "image")
        .map(|v| {
            (
                v["index"].as_u64().unwrap(),
                v["source"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let csv = std::fs::read_to_string(ab.join("manipulation_images.csv")).unwrap();
    let mut rows = csv.lines();
    let head: Vec<&str> = rows.next().unwrap().split(',').collect();
    assert_eq!(&head[..4], ["index", "source", "class", "class_name"]);
    let mut n = 0;
    for row in rows {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(f.len(), head.len(), "{row}");
        assert_eq!(f[1], sources[&f[0].parse::<u64>().unwrap()], "{row}");
        assert!(!f[3].is_empty(), "{row}: no class name");
        n += 1;
    }
    assert_eq!(n, sources.len() * man.methods.len() * 3);
    let at = dir.join("atlas");
    run_bin(&["atlas", "--results", r, "--out", at.to_str().unwrap()]);
    let a: atlas::Atlas =
        serde_json::from_str(&std::fs::read_to_string(at.join("atlas.json")).unwrap()).unwrap();
    assert_eq!(a.classes.iter().map(|e| e.images).sum::<usize>(), IMAGES);
    let pr = dir.join("prune");
    let saved = pr.join("pruned.safetensors");
    run_bin(&[
        "prune",
        "--results",
        r,
        "--model",
        ms,
        "--dtype",
        "f64",
        "--out",
        pr.to_str().unwrap(),
        "--k",
        "1,3,50",
        "--p",
        "0,0.5",
        "--d",
        "2,12",
        "--save-model",
        saved.to_str().unwrap(),
        "--save-class",
        "1",
    ]);
    let p: pruning::Pruning =
        serde_json::from_str(&std::fs::read_to_string(pr.join("prune.json")).unwrap()).unwrap();
    assert_eq!(
        p.settings.grid.ks,
        vec![1, 3],
        "K clamped to the run's top-K"
    );
    assert_eq!(p.settings.grid.ds, vec![2, 4], "d clamped to the layers");
    for q in p.overall.iter().filter(|q| q.p == 0.0) {
        assert_eq!(
            q.prob_pruned, q.prob_unpruned,
            "p = 0 is the unpruned model"
        );
    }
    let pred = run_bin(&[
        "predict",
        "--model",
        saved.to_str().unwrap(),
        "--heads",
        "4",
        "--json",
        x.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&pred.stdout).unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), IMAGES);
    // Another model than the run's is refused.
    let other = fixture("golden/tiny_vit_posemb3x3.npz");
    let out = Command::new(BIN)
        .args([
            "ablate",
            "--results",
            r,
            "--model",
            other.to_str().unwrap(),
            "--out",
        ])
        .arg(&ab)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not the model of these results"));
}

#[test]
fn thumbnails_are_inline_images() {
    use neuronpath::experiments::render::thumbs;
    assert_eq!(thumbs::base64(b"Man"), "TWFu");
    assert_eq!(thumbs::base64(b"Ma"), "TWE=");
    assert_eq!(thumbs::base64(b"M"), "TQ==");
    let (_, x) = discovered();
    let its = items(x);
    let uri = thumbs::data_uri(&its[&0], &pre()).unwrap();
    assert!(
        uri.starts_with("data:image/png;base64,iVBORw0KGgo"),
        "{}",
        &uri[..40]
    );
}
