//! No write destroys data: outputs onto inputs and onto files of other kinds are refused with
//! the original bytes intact, a results file in use by one run is refused to another, a run
//! killed with SIGKILL resumes to what an uninterrupted run writes, error records are retried,
//! and merging warns about what is missing.
mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_neuronpath"))
}

/// An ImageNet-style folder: 3 classes of `per_class` PNGs.
fn dataset(dir: &Path, per_class: u32) -> PathBuf {
    let root = dir.join("data");
    for (c, name) in ["a", "b", "c"].iter().enumerate() {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..per_class {
            let img = image::RgbImage::from_fn(40, 30, |x, y| {
                image::Rgb([
                    (x * 6 + c as u32 * 70) as u8,
                    (y * 8 + i * 40) as u8,
                    ((x + y) * 3 + i) as u8,
                ])
            });
            img.save(d.join(format!("img{i}.png"))).unwrap();
        }
    }
    root
}

fn discover_cmd(model: &Path, data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["discover", "--model"])
        .arg(model)
        .arg(data)
        .args(["--dtype", "f64", "--target", "predicted"])
        .arg("-o")
        .arg(out)
        .args(extra);
    if !extra.contains(&"--steps") {
        c.args(["--steps", "8"]);
    }
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

/// Fails with a one-line error containing `want`, never a panic.
fn refused(o: Output, want: &str) {
    let e = stderr(&o);
    assert!(!o.status.success(), "not refused: {e}");
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

/// One finished run over a 3 x 2 image folder, with the model copied beside it.
struct Run {
    dir: tempfile::TempDir,
    model: PathBuf,
    data: PathBuf,
    results: PathBuf,
}

fn run() -> Run {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.npz");
    std::fs::copy(fixture("golden/tiny_vit.npz"), &model).unwrap();
    let data = dataset(dir.path(), 2);
    let results = dir.path().join("r.jsonl");
    ok(discover_cmd(&model, &data, &results, &[]).output().unwrap());
    Run {
        dir,
        model,
        data,
        results,
    }
}

#[test]
fn outputs_onto_inputs_are_refused_with_the_bytes_intact() {
    let r = run();
    let d = r.dir.path();
    let before = std::fs::read(&r.results).unwrap();
    let model_bytes = std::fs::read(&r.model).unwrap();
    // report -o onto its results file (also spelled another way).
    for out in [r.results.clone(), d.join("data/../r.jsonl")] {
        let o = bin()
            .args(["report", "--no-model", "--results"])
            .arg(&r.results)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        refused(o, "is an input of this command");
    }
    // prune --save-model onto the input checkpoint.
    let o = bin()
        .args(["prune", "--results"])
        .arg(&r.results)
        .arg("--model")
        .arg(&r.model)
        .arg("-o")
        .arg(d.join("prune"))
        .arg("--save-model")
        .arg(&r.model)
        .output()
        .unwrap();
    refused(o, "is an input of this command");
    // merge -o onto one of its inputs, even with --force.
    let o = bin()
        .arg("merge")
        .arg(&r.results)
        .arg("-o")
        .arg(&r.results)
        .arg("--force")
        .output()
        .unwrap();
    refused(o, "is an input of this command");
    // Outputs inside the image folder (it would become a class, or an image).
    let o = discover_cmd(&r.model, &r.data, &r.data.join("r.jsonl"), &[])
        .output()
        .unwrap();
    refused(o, "inside the input folder");
    let o = discover_cmd(&r.model, &r.data, &r.model, &["--force"])
        .output()
        .unwrap();
    refused(o, "is an input of this command");
    assert_eq!(std::fs::read(&r.results).unwrap(), before);
    assert_eq!(std::fs::read(&r.model).unwrap(), model_bytes);
    assert!(!r.data.join("r.jsonl").exists());
}

#[test]
fn discover_never_writes_its_report_over_its_results() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.json");
    // The embedded samples write report.html and report.json beside the results by default.
    let o = bin()
        .args(["discover", "--steps", "2", "--per-class", "1", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    refused(o, "already writes its results file there");
    assert!(!out.exists());
    // The same with an earlier results file there: refused, the file intact.
    std::fs::write(&out, b"{\"kind\":\"header\",\"model\":{}}\n").unwrap();
    let o = bin()
        .args(["discover", "--steps", "2", "--per-class", "1", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    refused(o, "already writes its results file there");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"{\"kind\":\"header\",\"model\":{}}\n"
    );
}

#[test]
fn foreign_files_need_force_and_own_outputs_are_replaced() {
    let r = run();
    let d = r.dir.path();
    let notes = d.join("notes.txt");
    std::fs::write(&notes, b"my notes").unwrap();
    // merge -o onto an unrelated file: refused, then replaced with --force.
    let merge = |force: bool| {
        let mut c = bin();
        c.arg("merge").arg(&r.results).arg("-o").arg(&notes);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    refused(merge(false), "--force");
    assert_eq!(std::fs::read(&notes).unwrap(), b"my notes");
    ok(merge(true));
    assert_same_records(&records(&notes), &records(&r.results));
    // Now it is a results file: merging again replaces it without --force.
    ok(merge(false));
    // report -o onto a page neuronpath did not write; then its own page.
    let page = d.join("page.html");
    std::fs::write(&page, b"<html>mine</html>").unwrap();
    let report = |out: &Path, force: bool| {
        let mut c = bin();
        c.args(["report", "--no-model", "--results"])
            .arg(&r.results)
            .arg("-o")
            .arg(out);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    refused(report(&page, false), "not a neuronpath report");
    assert_eq!(std::fs::read(&page).unwrap(), b"<html>mine</html>");
    let own = d.join("own.html");
    ok(report(&own, false));
    ok(report(&own, false));
    ok(report(&page, true));
    // atlas into a folder whose atlas.json is someone else's; a CSV of its set likewise.
    let atlas = |out: &Path| {
        bin()
            .args(["atlas", "--results"])
            .arg(&r.results)
            .arg("-o")
            .arg(out)
            .output()
            .unwrap()
    };
    let folder = d.join("atlas");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("layers.csv"), b"a,b\n1,2\n").unwrap();
    refused(atlas(&folder), "layers.csv: exists and is not a neuronpath");
    assert_eq!(
        std::fs::read(folder.join("layers.csv")).unwrap(),
        b"a,b\n1,2\n"
    );
    std::fs::remove_file(folder.join("layers.csv")).unwrap();
    ok(atlas(&folder));
    ok(atlas(&folder));
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("atlas.json")).unwrap()).unwrap();
    assert_eq!(v["neuronpath"]["output"], "atlas");
    // discover -o onto an unrelated file: refused, then replaced with --force.
    let o = discover_cmd(&r.model, &r.data, &notes, &[])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o)); // a results file by now: resumed
    let other = d.join("other.txt");
    std::fs::write(&other, b"keep me").unwrap();
    refused(
        discover_cmd(&r.model, &r.data, &other, &[])
            .output()
            .unwrap(),
        "not a neuronpath results file",
    );
    assert_eq!(std::fs::read(&other).unwrap(), b"keep me");
    ok(discover_cmd(&r.model, &r.data, &other, &["--force"])
        .output()
        .unwrap());
    assert_same_records(&records(&other), &records(&r.results));
    // prune --save-model onto an existing file that is not a saved model.
    let o = bin()
        .args(["prune", "--results"])
        .arg(&r.results)
        .arg("--model")
        .arg(&r.model)
        .arg("-o")
        .arg(d.join("prune"))
        .arg("--save-model")
        .arg(&other)
        .output()
        .unwrap();
    refused(o, "not a neuronpath saved model");
}

#[test]
fn a_results_file_in_use_is_refused_to_a_second_run() {
    let r = run();
    let before = std::fs::read(&r.results).unwrap();
    // Another run holds the lock.
    let held = std::fs::File::options()
        .append(true)
        .open(&r.results)
        .unwrap();
    held.try_lock().unwrap();
    let o = discover_cmd(&r.model, &r.data, &r.results, &[])
        .output()
        .unwrap();
    refused(o, "is in use by another neuronpath run");
    let o = bin()
        .arg("merge")
        .arg(&r.results)
        .arg("-o")
        .arg(r.results.with_file_name("m.jsonl"))
        .output()
        .unwrap();
    ok(o); // reading is fine
    let o = bin()
        .arg("merge")
        .arg(r.results.with_file_name("m.jsonl"))
        .arg("-o")
        .arg(&r.results)
        .output()
        .unwrap();
    refused(o, "is in use by another neuronpath run");
    drop(held);
    assert_eq!(std::fs::read(&r.results).unwrap(), before);
}

#[test]
fn two_concurrent_runs_give_one_valid_file_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), 4);
    let model = fixture("golden/tiny_vit.npz");
    let out = dir.path().join("r.jsonl");
    let args = ["--batch", "1", "--steps", "32"];
    let a = discover_cmd(&model, &data, &out, &args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = discover_cmd(&model, &data, &out, &args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut succeeded = 0;
    for o in [&a, &b] {
        if o.status.success() {
            succeeded += 1;
        } else {
            let e = stderr(o);
            assert!(e.contains("is in use by another neuronpath run"), "{e}");
            assert_eq!(e.matches("error:").count(), 1, "{e}");
            assert!(!e.contains("panicked"), "{e}");
        }
    }
    assert!(succeeded >= 1);
    let r = records(&out);
    assert_eq!(r.len(), 12);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text.lines().count(),
        13,
        "one header and one line per image"
    );
    let indices: std::collections::BTreeSet<u64> =
        r.iter().map(|v| v["index"].as_u64().unwrap()).collect();
    assert_eq!(indices.len(), 12);
}

#[test]
fn a_run_killed_with_sigkill_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), 4);
    let model = fixture("golden/tiny_vit.npz");
    let args = ["--batch", "1", "--steps", "64"];
    let full = dir.path().join("full.jsonl");
    ok(discover_cmd(&model, &data, &full, &args).output().unwrap());
    let part = dir.path().join("part.jsonl");
    let mut child = discover_cmd(&model, &data, &part, &args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed (SIGKILL) once two images are written.
    let lines = || {
        std::fs::read_to_string(&part)
            .map(|t| t.matches('\n').count())
            .unwrap_or(0)
    };
    let start = std::time::Instant::now();
    while lines() < 3 && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = records(&part).len();
    assert!(
        done < 12,
        "the run finished before it was killed ({done} records)"
    );
    let o = ok(discover_cmd(&model, &data, &part, &args).output().unwrap());
    assert!(
        stderr(&o).contains(&format!("{done} done before")),
        "{}",
        stderr(&o)
    );
    assert_same_records(&records(&full), &records(&part));
}

#[test]
fn error_records_are_retried_unless_no_retry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), 2);
    let model = fixture("golden/tiny_vit.npz");
    let good = std::fs::read(data.join("b/img1.png")).unwrap();
    std::fs::write(data.join("b/img1.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let out = dir.path().join("r.jsonl");
    ok(discover_cmd(&model, &data, &out, &[]).output().unwrap());
    let errors = |p: &Path| {
        records(p)
            .iter()
            .filter(|v| v.get("error").is_some())
            .count()
    };
    assert_eq!(errors(&out), 1);
    // Repaired: --no-retry keeps the error, a plain resume runs the image again.
    std::fs::write(data.join("b/img1.png"), good).unwrap();
    let o = ok(discover_cmd(&model, &data, &out, &["--no-retry"])
        .output()
        .unwrap());
    assert!(stderr(&o).contains("6 done before"), "{}", stderr(&o));
    assert_eq!(errors(&out), 1);
    let o = ok(discover_cmd(&model, &data, &out, &[]).output().unwrap());
    assert!(stderr(&o).contains("retrying 1 image"), "{}", stderr(&o));
    assert_eq!(errors(&out), 0);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 7, "no duplicate line: {text}");
    let fresh = dir.path().join("fresh.jsonl");
    ok(discover_cmd(&model, &data, &fresh, &[]).output().unwrap());
    assert_same_records(&records(&fresh), &records(&out));
}

#[test]
fn readers_name_a_corrupt_middle_line_and_deduplicate() {
    let r = run();
    let text = std::fs::read_to_string(&r.results).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let atlas = |results: &Path, out: &str| {
        bin()
            .args(["atlas", "--results"])
            .arg(results)
            .arg("-o")
            .arg(r.dir.path().join(out))
            .output()
            .unwrap()
    };
    // A line cut in the middle of the file.
    let bad = r.dir.path().join("bad.jsonl");
    let mut cut = lines.clone();
    cut[3] = &lines[3][..lines[3].len() / 2];
    std::fs::write(&bad, cut.join("\n") + "\n").unwrap();
    refused(atlas(&bad, "a1"), "bad.jsonl: line 4");
    // Two runs' records of one image: the last is used, with a warning.
    let dup = r.dir.path().join("dup.jsonl");
    let mut twice = lines.clone();
    twice.push(lines[2]);
    std::fs::write(&dup, twice.join("\n") + "\n").unwrap();
    let o = ok(atlas(&dup, "a2"));
    assert!(
        stderr(&o).contains("1 record(s) repeat an image"),
        "{}",
        stderr(&o)
    );
    let a: Value =
        serde_json::from_str(&std::fs::read_to_string(r.dir.path().join("a2/atlas.json")).unwrap())
            .unwrap();
    let images: u64 = a["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["images"].as_u64().unwrap())
        .sum();
    assert_eq!(images, 6);
}

#[test]
fn merge_warns_about_missing_shards_and_equals_the_unsharded_run() {
    let r = run();
    let d = r.dir.path();
    let shard = |s: &str| {
        let out = d.join(format!("s{}.jsonl", &s[..1]));
        ok(discover_cmd(&r.model, &r.data, &out, &["--shard", s])
            .output()
            .unwrap());
        out
    };
    let shards: Vec<PathBuf> = ["0/3", "1/3", "2/3"].iter().map(|s| shard(s)).collect();
    let merged = d.join("merged.jsonl");
    let o = ok(bin()
        .arg("merge")
        .args(&shards)
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap());
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert_same_records(&records(&r.results), &records(&merged));
    let o = ok(bin()
        .arg("merge")
        .args(&shards[..2])
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap());
    let e = stderr(&o);
    assert!(e.contains("shard(s) 2/3"), "{e}");
    assert!(e.contains("2 of the run's 6 images"), "{e}");
}
