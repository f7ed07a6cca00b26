//! The `discover` command end to end: outputs, resume after a kill, shards and merge, bad input.
mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_neuronpath"))
}

/// A small ImageNet-style folder: 3 classes of PNGs made from the golden input.
fn dataset(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    for (c, name) in ["a", "b", "c"].iter().enumerate() {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..3 {
            let img = image::RgbImage::from_fn(40, 30, |x, y| {
                image::Rgb([
                    (x * 6 + c as u32 * 70) as u8,
                    (y * 8 + i * 40) as u8,
                    ((x + y) * 3) as u8,
                ])
            });
            img.save(d.join(format!("img{i}.png"))).unwrap();
        }
    }
    root
}

fn discover(dir: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let data = dataset(dir);
    let o = bin()
        .args(["discover", "--model"])
        .arg(fixture("golden/tiny_vit.npz"))
        .arg(&data)
        .args([
            "--dtype",
            "f64",
            "--steps",
            "8",
            "--batch",
            "2",
            "--target",
            "predicted",
            "-o",
        ])
        .arg(dir.join(out))
        .args(extra)
        .output()
        .unwrap();
    o
}

fn records(path: &Path) -> (Value, Vec<Value>) {
    let (h, r) = neuronpath::io::results::read_results(path).unwrap();
    let mut r: Vec<Value> = r.iter().map(|r| serde_json::to_value(r).unwrap()).collect();
    r.sort_by_key(|v| v["index"].as_u64());
    (serde_json::to_value(h).unwrap(), r)
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let full = discover(dir.path(), "full.jsonl", &[]);
    assert!(
        full.status.success(),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    // Killed after 4 images, with half a record left behind by the "kill".
    let part = discover(dir.path(), "part.jsonl", &["--stop-after", "4"]);
    assert!(part.status.success());
    let p = dir.path().join("part.jsonl");
    let (_, before) = records(&p);
    assert_eq!(before.len(), 4);
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    std::io::Write::write_all(&mut f, b"{\"kind\":\"image\",\"index\":5,\"meth").unwrap();
    let resumed = discover(dir.path(), "part.jsonl", &[]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("4 done before"));
    let (_, a) = records(&dir.path().join("full.jsonl"));
    let (_, b) = records(&p);
    assert_eq!(a.len(), 9);
    for (x, y) in a.iter().zip(&b) {
        assert!(same(x, y), "resumed record differs:\n{x}\n{y}");
    }
}

#[test]
fn merged_shards_equal_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    assert!(discover(dir.path(), "all.jsonl", &[]).status.success());
    for s in ["0/3", "1/3", "2/3"] {
        let o = discover(dir.path(), &format!("s{}.jsonl", &s[..1]), &["--shard", s]);
        assert!(o.status.success());
    }
    let merged = dir.path().join("merged.jsonl");
    let o = bin()
        .arg("merge")
        .args(["s0.jsonl", "s1.jsonl", "s2.jsonl"].map(|f| dir.path().join(f)))
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, b) = (records(&dir.path().join("all.jsonl")).1, records(&merged).1);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!(same(x, y), "merged record differs:\n{x}\n{y}");
    }
    // Another configuration is refused, naming what differs.
    assert!(discover(
        dir.path(),
        "other.jsonl",
        &["--shard", "0/3", "--seed", "5"]
    )
    .status
    .success());
    let o = bin()
        .arg("merge")
        .args(["s0.jsonl", "other.jsonl"].map(|f| dir.path().join(f)))
        .arg("-o")
        .arg(dir.path().join("bad.jsonl"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("seed"));
}

#[test]
fn header_describes_the_run_and_records_are_complete() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("ref/run");
    let o = discover(
        dir.path(),
        "r.jsonl",
        &["--reference-layout", prefix.to_str().unwrap()],
    );
    assert!(o.status.success());
    let (h, r) = records(&dir.path().join("r.jsonl"));
    assert_eq!(h["steps"], 8);
    assert_eq!(h["model"]["config"]["layers"], 4);
    assert_eq!(h["model"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(h["class_names"], serde_json::json!(["a", "b", "c"]));
    for rec in &r {
        for m in ["path", "activation", "influence", "random"] {
            assert_eq!(
                rec["methods"][m]["path"].as_array().unwrap().len(),
                4,
                "{m}"
            );
        }
        assert_eq!(
            rec["methods"]["path"]["margins"].as_array().unwrap().len(),
            4
        );
    }
    // The authors' layout holds the same paths, grouped by target class.
    let back = neuronpath::io::reference::read_reference(&prefix).unwrap();
    let n: usize = back.values().map(|v| v.len()).sum();
    assert_eq!(n, 9);
    // A new results file beside the same layout starts its label files anew (no entry twice);
    // a resumed run with nothing left adds nothing.
    std::fs::remove_file(dir.path().join("r.jsonl")).unwrap();
    for _ in 0..2 {
        let again = discover(
            dir.path(),
            "r.jsonl",
            &["--reference-layout", prefix.to_str().unwrap()],
        );
        assert!(again.status.success());
        let back = neuronpath::io::reference::read_reference(&prefix).unwrap();
        assert_eq!(back.values().map(|v| v.len()).sum::<usize>(), 9);
    }
    for (target, entries) in back {
        let ours: Vec<&Value> = r.iter().filter(|v| v["target"] == target).collect();
        assert_eq!(ours.len(), entries.len());
        let p: Vec<usize> = ours[0]["methods"]["path"]["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(entries[0].ja[0], p);
    }
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A corrupt image inside a class folder: recorded as an error, the rest goes on.
    let data = dataset(dir.path());
    std::fs::write(data.join("b/img1.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let o = bin()
        .args(["discover", "--model"])
        .arg(fixture("golden/tiny_vit.npz"))
        .arg(&data)
        .args(["--steps", "4", "-o"])
        .arg(dir.path().join("x.jsonl"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, r) = records(&dir.path().join("x.jsonl"));
    let bad: Vec<&Value> = r.iter().filter(|v| v.get("error").is_some()).collect();
    assert_eq!(bad.len(), 1);
    assert!(bad[0]["source"].as_str().unwrap().ends_with("img1.png"));
    // A label the model does not have.
    let labels = dir.path().join("labels.json");
    std::fs::write(&labels, "[3, 12]").unwrap();
    let o = bin()
        .args(["discover", "--model"])
        .arg(fixture("golden/tiny_vit.npz"))
        .arg(fixture("golden/input_x.npy"))
        .arg("--labels")
        .arg(&labels)
        .arg("-o")
        .arg(dir.path().join("y.jsonl"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("label 12") && err.contains("10 classes"),
        "{err}"
    );
    // An output folder that cannot be created.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let o = bin()
        .args(["discover", "--model"])
        .arg(fixture("golden/tiny_vit.npz"))
        .arg(&data)
        .arg("-o")
        .arg(blocker.join("sub/out.jsonl"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("cannot create the output folder"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

/// The closing summary goes to stdout; a re-run with nothing left says so and prints the stored
/// summary; labels may name classes; without the embedded samples discover says how to get
/// the report.
#[test]
fn rerun_summary_named_labels_and_report_hint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist/samples");
    let coat = samples.join("04-coat/test-00006.png");
    let trouser = samples
        .join("01-trouser")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let labels = d.join("labels.json");
    std::fs::write(&labels, r#"["Coat", "trouser"]"#).unwrap();
    let out = d.join("run.jsonl");
    let run = || {
        let o = bin()
            .arg("discover")
            .arg(&coat)
            .arg(&trouser)
            .arg("--labels")
            .arg(&labels)
            .args(["--methods", "path", "-o"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let first = run();
    assert!(first.contains("2 images in"), "{first}");
    assert!(
        first.contains("for the HTML report: neuronpath report --results"),
        "{first}"
    );
    let (_, recs) = records(&out);
    let got: Vec<u64> = recs.iter().map(|r| r["label"].as_u64().unwrap()).collect();
    assert_eq!(got, [4, 1], "labels by class name");
    let again = run();
    assert!(again.contains("all 2 images already done"), "{again}");
    assert!(again.contains("2 images, 0 errors"), "{again}");
    let row = |s: &str| s.lines().find(|l| l.starts_with("path ")).map(String::from);
    assert_eq!(
        row(&first),
        row(&again),
        "the stored summary is the first run's"
    );
    // A name the model does not have is a one-line error naming the file.
    std::fs::write(&labels, r#"["Coat", "Cat"]"#).unwrap();
    let o = bin()
        .arg("discover")
        .arg(&coat)
        .arg(&trouser)
        .arg("--labels")
        .arg(&labels)
        .arg("-o")
        .arg(d.join("other.jsonl"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("no class is named \"Cat\"")
            && err.contains("labels.json"),
        "{err}"
    );
}
