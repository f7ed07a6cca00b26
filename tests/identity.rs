//! Images are identified by their path below the input and a hash of their bytes, not by their
//! position: renaming, adding or reordering files between runs neither shifts nor redoes work
//! (the resumed file equals an uninterrupted run on the new folder), a file rewritten with other
//! content is computed again, the same image is counted once, files written before identities
//! resume by their source paths, and a non-UTF-8 model path is found again exactly. Also: `train
//! --out` and the authors' layout files refuse to replace what neuronpath did not write.
mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_neuronpath"))
}

fn png(path: &Path, seed: u32) {
    let img = image::RgbImage::from_fn(40, 30, |x, y| {
        image::Rgb([
            (x * 6 + seed * 70) as u8,
            (y * 8 + seed * 40) as u8,
            ((x + y) * 3 + seed) as u8,
        ])
    });
    img.save(path).unwrap();
}

/// Class folders `a` and `b` with the images `names` each (distinct content per file).
fn dataset(dir: &Path, names: &[&str]) -> PathBuf {
    let root = dir.join("data");
    for (c, class) in ["a", "b"].iter().enumerate() {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for (i, n) in names.iter().enumerate() {
            png(&root.join(class).join(n), (c * 7 + i) as u32);
        }
    }
    root
}

fn discover(model: &Path, inputs: &[&Path], out: &Path, extra: &[&str]) -> Output {
    let mut c = bin();
    c.args(["discover", "--model"]).arg(model);
    for i in inputs {
        c.arg(i);
    }
    c.args(["--dtype", "f64", "--target", "predicted", "--steps", "8"])
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

fn refused(o: Output, want: &str) {
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(want), "expected `{want}` in: {e}");
    assert!(!e.contains("panicked"), "{e}");
}

fn records(path: &Path) -> Vec<Value> {
    let (_, r) = neuronpath::io::results::read_results(path).unwrap();
    let mut r: Vec<Value> = r.iter().map(|r| serde_json::to_value(r).unwrap()).collect();
    r.sort_by_key(|v| v["index"].as_u64());
    r
}

fn header(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

fn model() -> PathBuf {
    fixture("golden/tiny_vit.npz")
}

#[test]
fn renamed_added_and_reordered_files_neither_shift_nor_redo_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), &["p.png", "q.png", "r.png"]);
    let out = dir.path().join("r.jsonl");
    // Four of six images: a/p, a/q, a/r, b/p.
    ok(discover(
        &model(),
        &[&data],
        &out,
        &["--stop-after", "4", "--batch", "1"],
    ));
    assert_eq!(records(&out).len(), 4);
    let before = records(&out);
    // a/q renamed to a/z (now last of its class), a new a/b.png first, b/p renamed to b/o.
    std::fs::rename(data.join("a/q.png"), data.join("a/z.png")).unwrap();
    std::fs::rename(data.join("b/p.png"), data.join("b/o.png")).unwrap();
    png(&data.join("a/b.png"), 99);
    let o = ok(discover(&model(), &[&data], &out, &["--batch", "1"]));
    let e = stderr(&o);
    // Every image done before is still done (renamed ones found by content): 4 of 7.
    assert!(e.contains("3 images (4 done before)"), "{e}");
    assert!(e.contains("2 image(s) found under a new name"), "{e}");
    let fresh = dir.path().join("fresh.jsonl");
    ok(discover(&model(), &[&data], &fresh, &[]));
    assert_same_records(&records(&fresh), &records(&out));
    assert_eq!(header(&out)["inputs"]["count"], 7);
    assert_eq!(header(&out)["schema"], "1.2");
    // The renamed image's record is the one computed before, not a new one.
    let find = |recs: &[Value], path: &str| -> Value {
        recs.iter()
            .find(|r| r["image"]["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("no record of {path}"))
    };
    let old = find(&before, "data/a/q.png");
    let new = find(&records(&out), "data/a/z.png");
    assert_eq!(old["image"]["sha256"], new["image"]["sha256"]);
    assert_eq!(old["methods"], new["methods"]);
    assert_eq!(new["source"], data.join("a/z.png").display().to_string());
}

#[test]
fn a_file_with_new_content_under_the_same_name_is_computed_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), &["p.png", "q.png"]);
    let out = dir.path().join("r.jsonl");
    ok(discover(&model(), &[&data], &out, &[]));
    let old = records(&out);
    png(&data.join("b/q.png"), 50);
    let o = ok(discover(&model(), &[&data], &out, &[]));
    let e = stderr(&o);
    assert!(e.contains("1 images (3 done before)"), "{e}");
    assert!(e.contains("1 image(s) changed since their record"), "{e}");
    let fresh = dir.path().join("fresh.jsonl");
    ok(discover(&model(), &[&data], &fresh, &[]));
    let now = records(&out);
    assert_same_records(&records(&fresh), &now);
    assert_ne!(old[3]["image"]["sha256"], now[3]["image"]["sha256"]);
    // Commands over the results check the bytes they read against the record's hash.
    png(&data.join("a/p.png"), 51);
    let o = bin()
        .args(["ablate", "--results"])
        .arg(&out)
        .arg("-o")
        .arg(dir.path().join("abl"))
        .output()
        .unwrap();
    refused(o, "changed since it was recorded");
}

#[test]
fn the_same_image_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), &["p.png", "q.png"]);
    let out = dir.path().join("r.jsonl");
    // The folder given twice: each image computed once.
    let o = ok(discover(&model(), &[&data, &data], &out, &[]));
    assert!(
        stderr(&o).contains("4 input image(s) repeat an earlier one"),
        "{}",
        stderr(&o)
    );
    assert_eq!(records(&out).len(), 4);
    // A record of the same image under another index (a second run's): read once, with a
    // warning, by every reader and by merge.
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut again: Value = serde_json::from_str(&lines[2]).unwrap();
    again["index"] = 6.into();
    lines.push(again.to_string());
    let dup = dir.path().join("dup.jsonl");
    std::fs::write(&dup, lines.join("\n") + "\n").unwrap();
    let (_, recs) = neuronpath::io::results::read_results(&dup).unwrap();
    assert_eq!(recs.len(), 4);
    let o = ok(bin()
        .args(["atlas", "--results"])
        .arg(&dup)
        .arg("-o")
        .arg(dir.path().join("atlas"))
        .output()
        .unwrap());
    assert!(
        stderr(&o).contains("1 record(s) repeat an image"),
        "{}",
        stderr(&o)
    );
    let a: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("atlas/atlas.json")).unwrap(),
    )
    .unwrap();
    let images: u64 = a["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["images"].as_u64().unwrap())
        .sum();
    assert_eq!(images, 4);
    let merged = dir.path().join("m.jsonl");
    let o = ok(bin()
        .arg("merge")
        .arg(&out)
        .arg(&dup)
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap());
    assert_eq!(records(&merged).len(), 4, "{}", stderr(&o));
}

#[test]
fn files_without_identities_resume_by_source_and_are_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), &["p.png", "q.png"]);
    let out = dir.path().join("r.jsonl");
    ok(discover(&model(), &[&data], &out, &[]));
    let full = records(&out);
    // As neuronpath wrote it before identities: schema 1.1, no `image`, and one record missing.
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines[0]["schema"] = "1.1".into();
    for l in &mut lines[1..] {
        l.as_object_mut().unwrap().remove("image");
    }
    lines.remove(2);
    let old: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&out, old.join("\n") + "\n").unwrap();
    let o = ok(discover(&model(), &[&data], &out, &[]));
    let e = stderr(&o);
    assert!(e.contains("1 images (3 done before)"), "{e}");
    assert!(e.contains("written before image identities"), "{e}");
    assert_eq!(header(&out)["schema"], "1.2");
    let now = records(&out);
    assert_eq!(now.len(), 4);
    // The recomputed record equals the original; the old ones keep their results.
    for (a, b) in full.iter().zip(&now) {
        assert!(same(&a["methods"], &b["methods"]), "{a}\n{b}");
        assert_eq!(a["index"], b["index"]);
    }
}

#[test]
fn array_rows_are_identified_by_file_row_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let size = 32usize;
    let write_npy = |path: &Path, rows: &[f32]| {
        let n = rows.len();
        let mut h = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, 3, {size}, {size}), }}"
        );
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        for (r, v) in rows.iter().enumerate() {
            for k in 0..3 * size * size {
                let x = v + (k % 17) as f32 * 0.01 * (r + 1) as f32;
                b.extend(x.to_le_bytes());
            }
        }
        std::fs::write(path, b).unwrap();
    };
    let arr = dir.path().join("x.npy");
    write_npy(&arr, &[0.1, 0.2, 0.3]);
    let out = dir.path().join("r.jsonl");
    let cfg = neuronpath::model::load_model(&model(), &neuronpath::model::LoadOptions::default())
        .unwrap();
    if cfg.model.cfg.image_size != size {
        eprintln!("skipped: the fixture model is not {size}x{size}");
        return;
    }
    ok(discover(&model(), &[&arr], &out, &[]));
    let first = records(&out);
    assert_eq!(first[1]["image"]["path"], "x.npy");
    assert_eq!(first[1]["image"]["row"], 1);
    // Row 1's values change: only it is computed again.
    write_npy(&arr, &[0.1, 0.25, 0.3]);
    let o = ok(discover(&model(), &[&arr], &out, &[]));
    assert!(
        stderr(&o).contains("1 images (2 done before)"),
        "{}",
        stderr(&o)
    );
    let now = records(&out);
    assert_eq!(first[0], now[0]);
    assert_ne!(first[1]["image"]["sha256"], now[1]["image"]["sha256"]);
}

#[cfg(unix)]
#[test]
fn model_and_labels_paths_that_are_not_utf8_are_found_again() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join(std::ffi::OsStr::from_bytes(b"mod\xffels"));
    if std::fs::create_dir(&odd).is_err() {
        eprintln!("skipped: the file system refuses non-UTF-8 names");
        return;
    }
    let m = odd.join("tiny.npz");
    std::fs::copy(model(), &m).unwrap();
    let data = dataset(dir.path(), &["p.png"]);
    // A labels file (no loose images: no labels) whose name is not UTF-8 either.
    let labels = odd.join(std::ffi::OsStr::from_bytes(b"lab\xfeels.json"));
    std::fs::write(&labels, "[]").unwrap();
    let out = dir.path().join("r.jsonl");
    let mut c = bin();
    c.args(["discover", "--model"])
        .arg(&m)
        .arg(&data)
        .arg("--labels")
        .arg(&labels)
        .args(["--dtype", "f64", "--target", "predicted", "--steps", "8"])
        .args(["--methods", "path", "-o"])
        .arg(&out);
    ok(c.output().unwrap());
    let h = header(&out);
    assert!(h["model"]["path_hex"].is_string(), "{h}");
    assert!(h["inputs"]["labels_hex"].is_string(), "{h}");
    // ablate reopens the recorded model without --model.
    ok(bin()
        .args(["ablate", "--results"])
        .arg(&out)
        .arg("-o")
        .arg(dir.path().join("abl"))
        .output()
        .unwrap());
}

#[test]
fn train_out_refuses_inputs_and_files_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fmnist");
    std::fs::create_dir(&data).unwrap();
    let train = |out: &Path, extra: &[&str]| {
        bin()
            .args(["train", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(out)
            .args(["--limit", "64", "--epochs", "1"])
            .args(extra)
            .output()
            .unwrap()
    };
    // Into the data folder: refused, even with --force.
    refused(train(&data, &["--force"]), "inside the input folder");
    // A model folder of someone else's.
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("model")).unwrap();
    std::fs::write(out.join("model/model.safetensors"), b"not ours").unwrap();
    refused(
        train(&out, &[]),
        "model.safetensors: exists and is not a neuronpath",
    );
    assert_eq!(
        std::fs::read(out.join("model/model.safetensors")).unwrap(),
        b"not ours"
    );
    // A checkpoint folder holding other files.
    let other = dir.path().join("other");
    std::fs::create_dir_all(other.join("checkpoint")).unwrap();
    std::fs::write(other.join("checkpoint/state.json"), b"{\"mine\": 1}").unwrap();
    refused(
        train(&other, &[]),
        "state.json: exists and is not a neuronpath",
    );
    assert_eq!(
        std::fs::read(other.join("checkpoint/state.json")).unwrap(),
        b"{\"mine\": 1}"
    );
    // A linear probe whose backbone folder would be its output folder.
    let backbone = dir.path().join("bb");
    std::fs::create_dir_all(backbone.join("model")).unwrap();
    std::fs::write(backbone.join("model/config.json"), b"{}").unwrap();
    let o = bin()
        .args(["train", "--head-only", "--backbone"])
        .arg(backbone.join("model"))
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&backbone)
        .arg("--force")
        .output()
        .unwrap();
    refused(o, "inside the input folder");
    assert_eq!(
        std::fs::read(backbone.join("model/config.json")).unwrap(),
        b"{}"
    );
}

#[test]
fn authors_layout_files_of_someone_else_are_not_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), &["p.png"]);
    let out = dir.path().join("r.jsonl");
    let prefix = dir.path().join("ref");
    let foreign = dir.path().join("ref-0.rlt.jsonl");
    std::fs::write(&foreign, b"my own notes\n").unwrap();
    let args = ["--methods", "path,activation", "--reference-layout"];
    let run = |extra: &[&str]| {
        let mut a: Vec<&str> = args.to_vec();
        a.push(prefix.to_str().unwrap());
        a.extend(extra);
        discover(&model(), &[&data], &out, &a)
    };
    refused(run(&[]), "ref-0.rlt.jsonl: exists and is not a neuronpath");
    assert_eq!(std::fs::read(&foreign).unwrap(), b"my own notes\n");
    assert!(!out.exists(), "nothing written before the check");
    std::fs::remove_file(&foreign).unwrap();
    ok(run(&[]));
    // A second run appends to its own files.
    std::fs::remove_file(&out).unwrap();
    ok(run(&[]));
}

#[test]
fn another_spelling_of_the_same_model_and_inputs_resumes_and_a_readme_is_not_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), &["p.png", "q.png"]);
    let hf = dir.path().join("hf");
    std::fs::create_dir(&hf).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("families/deit_distilled").join(f), hf.join(f)).unwrap();
    }
    std::fs::create_dir(dir.path().join("x")).unwrap();
    let out = dir.path().join("r.jsonl");
    let args = ["--methods", "path", "--batch", "1"];
    let mut first = args.to_vec();
    first.extend(["--stop-after", "2"]);
    ok(discover(
        &dir.path().join("./hf/"),
        &[&dir.path().join("x/../data")],
        &out,
        &first,
    ));
    // The model card and a TensorFlow copy of the weights are not read, so not hashed.
    std::fs::write(hf.join("README.md"), "# a model card added later\n").unwrap();
    std::fs::write(hf.join("tf_model.h5"), vec![7u8; 4096]).unwrap();
    let o = ok(discover(&hf, &[&data], &out, &args));
    assert!(
        stderr(&o).contains("2 images (2 done before)"),
        "{}",
        stderr(&o)
    );
    let h = header(&out);
    assert_eq!(
        h["inputs"]["paths"][0],
        dir.path().join("x/../data").display().to_string()
    );
    // The hash covers exactly the files read: config.json then model.safetensors.
    use sha2::Digest;
    let mut sha = sha2::Sha256::new();
    for f in ["config.json", "model.safetensors"] {
        sha.update(std::fs::read(hf.join(f)).unwrap());
    }
    assert_eq!(h["model"]["sha256"], format!("{:x}", sha.finalize()));
}

fn merge(inputs: &[&Path], out: &Path) -> Output {
    let mut c = bin();
    c.arg("merge");
    for i in inputs {
        c.arg(i);
    }
    c.arg("-o").arg(out).output().unwrap()
}

#[test]
fn shards_follow_the_images_so_added_files_move_nothing() {
    use neuronpath::io::shard::Shard;
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), &["p.png", "q.png", "r.png", "s.png"]);
    let shard = |i: u64| Shard { index: i, count: 2 };
    let outs: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("s{i}.jsonl")))
        .collect();
    for (i, out) in outs.iter().enumerate() {
        let s = shard(i as u64).to_string();
        ok(discover(&model(), &[&data], out, &["--shard", &s]));
    }
    let before: Vec<usize> = outs.iter().map(|o| records(o).len()).collect();
    assert_eq!(before.iter().sum::<usize>(), 8);
    // Two new files that sort first in their class: every later image's position moves by one.
    let added = ["a/a.png", "b/a.png"];
    for (k, a) in added.iter().enumerate() {
        png(&data.join(a), 90 + k as u32);
    }
    for (i, out) in outs.iter().enumerate() {
        let s = shard(i as u64);
        let o = ok(discover(
            &model(),
            &[&data],
            out,
            &["--shard", &s.to_string()],
        ));
        let new = added
            .iter()
            .filter(|a| s.holds(&Path::new("data").join(a), None))
            .count();
        // Only the new files of this shard are computed; nothing done before is redone.
        let want = format!("{new} images ({} done before)", before[i]);
        assert!(stderr(&o).contains(&want), "{want}: {}", stderr(&o));
        assert_eq!(records(out).len(), before[i] + new);
    }
    let merged = dir.path().join("merged.jsonl");
    ok(merge(&[&outs[0], &outs[1]], &merged));
    let fresh = dir.path().join("fresh.jsonl");
    ok(discover(&model(), &[&data], &fresh, &[]));
    assert_same_records(&records(&fresh), &records(&merged));
}

#[test]
fn records_of_deleted_images_are_left_out_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), &["p.png", "q.png"]);
    let out = dir.path().join("r.jsonl");
    ok(discover(&model(), &[&data], &out, &[]));
    std::fs::remove_file(data.join("a/q.png")).unwrap();
    let ablate = |to: &str| {
        bin()
            .args(["ablate", "--results"])
            .arg(&out)
            .arg("-o")
            .arg(dir.path().join(to))
            .output()
            .unwrap()
    };
    let o = ok(ablate("abl"));
    let e = stderr(&o);
    assert!(
        e.contains("1 recorded image(s) are no longer among the inputs (first: image 1"),
        "{e}"
    );
    let csv = std::fs::read_to_string(dir.path().join("abl/manipulation_images.csv")).unwrap();
    assert!(csv.contains("b/q.png") && csv.contains("a/p.png"), "{csv}");
    assert!(!csv.contains("a/q.png"), "{csv}");
    // With every image gone the inputs were moved or replaced: an error, not an empty ablation.
    for f in ["a/p.png", "b/p.png", "b/q.png"] {
        std::fs::remove_file(data.join(f)).unwrap();
    }
    png(&data.join("a/x.png"), 60);
    png(&data.join("b/x.png"), 61);
    refused(
        ablate("abl2"),
        "none of the 4 recorded images is among the inputs",
    );
}

#[test]
fn export_samples_replaces_only_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let fm = fixture("fashion-mnist");
    let to = dir.path().join("ex");
    let export = |force: bool| {
        let mut c = bin();
        c.args(["train", "--data"])
            .arg(&fm)
            .arg("--export-samples")
            .arg(&to)
            .args(["--per-class", "1"]);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    ok(export(false));
    // Its own earlier export is replaced (same bytes).
    ok(export(false));
    let classes = to.join("classes.json");
    let sample = std::fs::read_dir(to.join("samples/00-t-shirt-top"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for victim in [&classes, &sample] {
        std::fs::write(victim, b"my notes").unwrap();
        refused(export(false), "--force");
        assert_eq!(std::fs::read(victim).unwrap(), b"my notes");
    }
    ok(export(true));
    assert!(std::fs::read_to_string(&classes)
        .unwrap()
        .contains("Ankle boot"));
    // Never into the data folder.
    let inside = bin()
        .args(["train", "--data"])
        .arg(&fm)
        .arg("--export-samples")
        .arg(fm.join("ex"))
        .output()
        .unwrap();
    refused(inside, "inside");
    assert!(!fm.join("ex").exists());
}

#[cfg(unix)]
#[test]
fn a_direction_path_that_is_not_utf8_is_kept_exactly_and_never_written_onto() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), &["p.png"]);
    let first = dir.path().join("first.jsonl");
    ok(discover(&model(), &[&data], &first, &[]));
    let classes = header(&first)["model"]["config"]["num_classes"]
        .as_u64()
        .unwrap() as usize;
    let name = std::ffi::OsStr::from_bytes(b"dir\xe9ction.npy");
    let path = dir.path().join(name);
    assert!(path.to_str().is_none());
    let v: Vec<f32> = (0..classes).map(|c| c as f32 - 0.5).collect();
    candle_core::Tensor::new(v, &candle_core::Device::Cpu)
        .unwrap()
        .write_npy(&path)
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let out = dir.path().join("d.jsonl");
    let with = |out: &Path, force: bool| {
        let mut c = bin();
        c.args(["discover", "--model"]).arg(model()).arg(&data);
        c.args(["--dtype", "f64", "--steps", "8"]);
        c.arg("--direction").arg(&path).arg("-o").arg(out);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    ok(with(&out, false));
    let hex: String = name.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let got = header(&out)["objective"]["source_hex"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(got.ends_with(&hex), "{got}");
    // `-o` onto the direction file itself is refused even with --force, the bytes intact.
    refused(with(&path, true), "input");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
