//! Validation at the edge: NaN/Inf inputs become error records, results records that do not fit
//! the model are errors naming the file and line, settings the model cannot meet are refused by
//! the library itself (not only by the command line).
mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use neuronpath::attribution::discover::{discover_batch, Method, Request, TargetKind};
use neuronpath::attribution::jas::edited_probabilities;
use neuronpath::attribution::{AttributionError, AttributionSettings};
use neuronpath::model::Rows;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_neuronpath"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 1 with one `error:` line that contains every one of `needles`.
fn refused(o: &Output, needles: &[&str]) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    let last = e.trim_end().lines().last().unwrap_or("");
    assert!(last.starts_with("error: "), "{e}");
    for n in needles {
        assert!(last.contains(n), "`{n}` not in: {last}");
    }
    assert!(!e.contains("panicked"), "{e}");
}

/// The golden input (2 images of 32x32) and three copies of its first image: clean, one NaN
/// pixel, one infinite pixel; with labels.
fn poisoned_inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let x = Tensor::read_npy(fixture("golden/input_x.npy")).unwrap();
    let first = x.get(0).unwrap().to_dtype(DType::F32).unwrap();
    let mut rows: Vec<Vec<f32>> = (0..3)
        .map(|_| first.flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    rows[1][100] = f32::NAN;
    rows[2][7] = f32::NEG_INFINITY;
    let flat: Vec<f32> = rows.concat();
    let p = dir.join("poisoned.npy");
    Tensor::from_vec(flat, (3, 3, 32, 32), &Device::Cpu)
        .unwrap()
        .write_npy(&p)
        .unwrap();
    let labels = dir.join("labels.json");
    std::fs::write(&labels, "[1, 2, 3]").unwrap();
    (p, labels)
}

fn discover(dir: &Path, inputs: &[&Path], extra: &[&str], out: &str) -> Output {
    bin()
        .args(["discover", "--model"])
        .arg(fixture("golden/tiny_vit.npz"))
        .args(inputs)
        .args(["--dtype", "f64", "--steps", "4", "--no-report", "-o"])
        .arg(dir.join(out))
        .args(extra)
        .output()
        .unwrap()
}

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn nan_and_infinite_pixels_become_error_records() {
    let dir = tempfile::tempdir().unwrap();
    let (npy, labels) = poisoned_inputs(dir.path());
    // In one batch and one image at a time: the same records.
    for batch in ["3", "1"] {
        let out = format!("b{batch}.jsonl");
        let o = discover(
            dir.path(),
            &[&npy],
            &["--labels", labels.to_str().unwrap(), "--batch", batch],
            &out,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let r = lines(&dir.path().join(&out));
        assert_eq!(r.len(), 4, "header + 3 records");
        let path = &r[1]["methods"]["path"];
        assert!(path["jas"]["reference"].is_f64(), "{path}");
        assert!(r[1].get("error").is_none());
        for (rec, row) in [(&r[2], 1), (&r[3], 2)] {
            let e = rec["error"].as_str().unwrap_or_default();
            assert!(
                e.contains(&format!("poisoned.npy[{row}]")) && e.contains("NaN or infinite"),
                "{rec}"
            );
            assert!(rec.get("methods").is_none(), "{rec}");
        }
    }
}

fn tiny() -> neuronpath::model::Vit {
    load("golden/tiny_vit.npz", DType::F64)
}

fn request(steps: usize, top_k: usize) -> Request {
    Request {
        settings: AttributionSettings {
            steps,
            top_k,
            compat: false,
            rows: Rows::Cls,
            chunk_rows: 64,
            engine: Default::default(),
        },
        methods: vec![Method::Path, Method::Activation],
        target: TargetKind::Predicted,
        seed: 0,
    }
}

#[test]
fn the_library_refuses_what_the_model_cannot_meet() {
    let model = tiny();
    let x = Tensor::read_npy(fixture("golden/input_x.npy"))
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let mlp = model.cfg.mlp_dim;
    let run = |req: &Request, x: &Tensor| discover_batch(&model, x, &[None, None], &[0, 1], req);
    for (steps, k) in [(0, 1), (4, 0), (4, mlp + 1)] {
        match run(&request(steps, k), &x) {
            Err(AttributionError::Settings(m)) => assert!(!m.is_empty()),
            other => panic!("steps {steps} K {k}: {:?}", other.map(|_| ())),
        }
    }
    // K equal to the width is allowed (every neuron on the set).
    run(&request(2, mlp), &x).unwrap();
    // A NaN pixel in the second image: that image is named.
    let mut v: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    let n = v.len() / 2;
    v[n + 5] = f64::NAN;
    let bad = Tensor::from_vec(v, x.dims(), &Device::Cpu).unwrap();
    match run(&request(4, 1), &bad) {
        Err(e @ AttributionError::NonFiniteInput { image: 1, count: 1 }) => {
            assert_eq!(e.image(), Some(1))
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Sets that do not fit: an error, not a panic or another image's neuron edited.
    let layers = model.cfg.layers;
    let fits: Vec<Vec<usize>> = vec![vec![0]; layers];
    let mut wide = fits.clone();
    wide[0] = vec![mlp];
    let short = vec![vec![0]; layers - 1];
    for sets in [vec![fits.clone(), wide], vec![fits.clone(), short]] {
        let e = edited_probabilities(&model, &x, &sets, 0.0, Rows::Cls).unwrap_err();
        assert!(e.to_string().contains("image 1"), "{e}");
    }
    edited_probabilities(&model, &x, &[fits.clone(), fits], 0.0, Rows::Cls).unwrap();
}

/// A change to one record.
type Edit = Box<dyn Fn(&mut Value)>;

/// A results file of the tiny model, then copies with one record damaged.
#[test]
fn records_that_do_not_fit_the_model_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("l.json");
    std::fs::write(&labels, "[1, 2]").unwrap();
    let x = fixture("golden/input_x.npy");
    let o = discover(
        dir.path(),
        &[&x],
        &["--labels", labels.to_str().unwrap(), "--top-k", "2"],
        "r.jsonl",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(dir.path().join("r.jsonl")).unwrap();
    let all: Vec<&str> = text.lines().collect();
    let edits: Vec<(&str, Edit)> = vec![
        (
            "neuron 9999",
            Box::new(|r| r["methods"]["path"]["path"][1] = 9999.into()),
        ),
        (
            "path of 1 neurons",
            Box::new(|r| r["methods"]["path"]["path"] = serde_json::json!([0])),
        ),
        (
            "neuron 4096",
            Box::new(|r| r["methods"]["activation"]["sets"][0][1] = 4096.into()),
        ),
        (
            "sets cover 1 layers",
            Box::new(|r| r["methods"]["path"]["sets"] = serde_json::json!([[0, 1]])),
        ),
        (
            "margins",
            Box::new(|r| r["methods"]["path"]["margins"] = serde_json::json!([0.5])),
        ),
        ("target 77", Box::new(|r| r["target"] = 77.into())),
    ];
    for (n, (needle, edit)) in edits.iter().enumerate() {
        let mut rec: Value = serde_json::from_str(all[2]).unwrap();
        edit(&mut rec);
        let p = dir.path().join(format!("bad{n}.jsonl"));
        std::fs::write(&p, format!("{}\n{}\n{}\n", all[0], all[1], rec)).unwrap();
        for cmd in ["ablate", "atlas", "report"] {
            let o = bin()
                .arg(cmd)
                .arg("--results")
                .arg(&p)
                .arg("-o")
                .arg(dir.path().join(format!("out-{cmd}-{n}")))
                .output()
                .unwrap();
            refused(&o, &[&format!("bad{n}.jsonl: line 3"), needle]);
        }
    }
    // A header whose top_k is above the layer width.
    let mut h: Value = serde_json::from_str(all[0]).unwrap();
    h["top_k"] = 100_000.into();
    let p = dir.path().join("badheader.jsonl");
    std::fs::write(&p, format!("{h}\n{}\n", all[1])).unwrap();
    let o = bin()
        .args(["atlas", "--results"])
        .arg(&p)
        .arg("-o")
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    refused(&o, &["badheader.jsonl: line 1", "top_k"]);
}

/// A class folder tree whose folder and file names are not UTF-8: discover reads it, and the
/// commands that gather the run's inputs again (ablate, atlas) find the same files.
#[cfg(unix)]
#[test]
fn non_utf8_folder_and_file_names_work_end_to_end() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(OsStr::from_bytes(b"data\xff\xfe"));
    for (c, class) in [&b"cl\xe9ss-a"[..], &b"class-b"[..]].iter().enumerate() {
        let d = root.join(OsStr::from_bytes(class));
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..2u32 {
            let img = image::RgbImage::from_fn(32, 32, |x, y| {
                image::Rgb([(x * 7 + c as u32 * 90) as u8, (y * 5 + i * 60) as u8, 40])
            });
            let mut name = b"im\x80g".to_vec();
            name.extend_from_slice(format!("{i}.png").as_bytes());
            img.save(d.join(OsStr::from_bytes(&name))).unwrap();
        }
    }
    let out = dir.path().join(OsStr::from_bytes(b"out\xff.jsonl"));
    let o = bin()
        .args(["discover", "--model"])
        .arg(fixture("golden/tiny_vit.npz"))
        .arg(&root)
        .args([
            "--steps",
            "2",
            "--no-report",
            "--methods",
            "path,activation",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r = lines(&out);
    assert_eq!(r.len(), 5, "header + 4 records");
    assert!(r[1..].iter().all(|v| v.get("error").is_none()), "{r:?}");
    for cmd in ["atlas", "ablate"] {
        let o = bin()
            .arg(cmd)
            .arg("--results")
            .arg(&out)
            .arg("-o")
            .arg(dir.path().join(OsStr::from_bytes(b"res\xff")).join(cmd))
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd}: {}", stderr(&o));
    }
}
