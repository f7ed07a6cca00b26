//! A corpus of hostile and careless inputs walked through the real binary: bad flags, bad
//! environment values, crafted checkpoints, configs, images, arrays, labels and results files.
//! Every one must end with exit code 1 or 2 (never a panic's 101 or an abort's 134) and one
//! `error:` line that names the flag, variable or file and says what is wrong.
mod common;
use common::fixture;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_neuronpath"))
}

/// One case: arguments, extra environment, and what the error line must contain.
struct Case {
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    needles: Vec<String>,
}

fn case(args: &[&str], needles: &[&str]) -> Case {
    Case {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        needles: needles.iter().map(|s| s.to_string()).collect(),
    }
}

fn p(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

fn run(c: &Case) {
    let o = bin()
        .args(&c.args)
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let code = o.status.code();
    assert!(
        matches!(code, Some(1) | Some(2)),
        "{:?}: exit {code:?}\n{err}",
        c.args
    );
    assert!(!err.contains("panicked"), "{:?}: {err}", c.args);
    // clap's own errors (exit 2) add usage lines after theirs; ours are the last line.
    let line = match code {
        Some(2) => err.lines().find(|l| l.starts_with("error:")),
        _ => err.trim_end().lines().last(),
    }
    .unwrap_or_else(|| panic!("{:?}: no error line in {err}", c.args));
    assert!(line.starts_with("error: "), "{:?}: {err}", c.args);
    for n in &c.needles {
        assert!(
            line.contains(n.as_str()),
            "{:?}: `{n}` not in: {line}",
            c.args
        );
    }
}

/// A Hugging Face folder copied from the fixture with its config edited.
fn hf_folder(dir: &Path, name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let src = fixture("loaders/hf_vit");
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(src.join("model.safetensors"), d.join("model.safetensors")).unwrap();
    let text = std::fs::read_to_string(src.join("config.json")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut cfg);
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    d
}

/// A safetensors file with the given header and data bytes.
fn safetensors(dir: &Path, name: &str, header: &str, data: usize) -> PathBuf {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.resize(b.len() + data, 0);
    let path = dir.join(name);
    std::fs::write(&path, b).unwrap();
    path
}

#[test]
fn hostile_flags_and_environment_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = p(&dir.path().join("r.jsonl"));
    let d = |extra: &[&str], needles: &[&str]| {
        let mut args = vec!["discover", "--no-report", "-o", &out];
        args.extend_from_slice(extra);
        case(&args, needles)
    };
    let mut cases = vec![
        d(&["--steps", "0"], &["--steps"]),
        d(&["--steps", "100000000"], &["--steps", "1..=1024"]),
        d(&["--top-k", "0"], &["--top-k"]),
        d(&["--top-k", "257"], &["--top-k 257", "256 neurons"]),
        d(&["--image-size", "0"], &["--image-size"]),
        d(
            &["--image-size", "7000"],
            &["image size 7000", "at most 256x256"],
        ),
        d(&["--image-size", "30"], &["image size 30", "patch size 7"]),
        d(&["--ln-eps=-1"], &["--ln-eps"]),
        d(&["--ln-eps", "NaN"], &["--ln-eps"]),
        d(&["--ln-eps", "inf"], &["--ln-eps"]),
        d(&["--heads", "0"], &["--heads"]),
        d(&["--heads", "7"], &["7 heads"]),
        d(&["--batch", "0"], &["--batch"]),
        d(&["--per-class", "0"], &["--per-class"]),
        d(&["--stop-after", "0"], &["--stop-after"]),
        d(&["--memory-limit-mb", "0"], &["--memory-limit-mb"]),
        d(
            &["--memory-limit-mb", "18446744073709551615"],
            &["--memory-limit-mb"],
        ),
        d(&["--shard", "3/2"], &["--shard", "3/2"]),
        d(&["--shard", "1/0"], &["--shard"]),
        d(&["--target", "class:99"], &["class:99", "10 outputs"]),
        d(&["--objective", "logit-diff:10"], &["logit-diff:10"]),
        d(&["--steps=-3"], &["--steps"]),
        d(
            &["--precision", "bf16"],
            &["--precision/--dtype bf16", "--cuda"],
        ),
        d(
            &["--dtype", "tf32"],
            &["--precision/--dtype tf32", "--cuda"],
        ),
        case(
            &["predict", "--precision", "tf32"],
            &["--precision/--dtype tf32"],
        ),
        case(
            &["train", "--backbone", "x", "--head-only", "--dtype", "bf16"],
            &["--dtype"],
        ),
        case(&["ablate", "--bootstrap", "5"], &["--bootstrap"]),
        case(&["ablate", "--factors", "nan"], &["--factors"]),
        case(&["ablate", "--batch", "0"], &["--batch"]),
        case(
            &["prune", "--save-model", "x", "--save-k", "0"],
            &["--save-k"],
        ),
        case(&["prune", "--p", "2"], &["--p"]),
        case(&["prune", "--holdout", "1"], &["--holdout"]),
        case(&["prune", "--bootstrap", "0"], &["--bootstrap"]),
        case(&["atlas", "--max-classes", "0"], &["--max-classes"]),
        case(&["explain", "--steps", "0"], &["--steps"]),
        case(&["explain", "--map-steps", "5000"], &["--map-steps"]),
        case(&["explain", "--index", "100000"], &["--index 100000"]),
        case(&["predict", "--batch", "0"], &["--batch"]),
        case(&["bench", "--steps", "0"], &["--steps"]),
        case(&["train", "--lr=-1"], &["--lr"]),
        case(&["train", "--heads", "0"], &["--heads"]),
    ];
    let env_case = |k: &'static str, v: &str, more: &[(&'static str, &str)], needle: &str| {
        let mut c = d(&["--stop-after", "1"], &[needle]);
        c.env.push((k, v.to_string()));
        c.env.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
        c
    };
    cases.extend([
        env_case(
            "SLURM_ARRAY_TASK_ID",
            "5",
            &[("SLURM_ARRAY_TASK_COUNT", "2")],
            "SLURM_ARRAY_TASK_ID",
        ),
        env_case(
            "SLURM_ARRAY_TASK_ID",
            "x",
            &[("SLURM_ARRAY_TASK_COUNT", "2")],
            "SLURM_ARRAY_TASK_ID=\"x\"",
        ),
        env_case(
            "SLURM_ARRAY_TASK_ID",
            "1",
            &[("SLURM_ARRAY_TASK_COUNT", "-2")],
            "SLURM_ARRAY_TASK_COUNT",
        ),
        env_case("SLURM_ARRAY_TASK_ID", "0", &[], "SLURM_ARRAY_TASK_COUNT"),
        env_case(
            "NEURONPATH_MAX_IMAGE_PIXELS",
            "0",
            &[],
            "NEURONPATH_MAX_IMAGE_PIXELS",
        ),
        env_case(
            "NEURONPATH_MAX_EXPANSION",
            "lots",
            &[],
            "NEURONPATH_MAX_EXPANSION",
        ),
    ]);
    for c in &cases {
        run(c);
    }
    assert!(
        !dir.path().join("r.jsonl").exists(),
        "a refused run wrote results"
    );
}

#[test]
fn hostile_files_are_one_line_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let out = p(&t.join("out.jsonl"));
    let model = |m: &Path, needles: &[&str]| {
        let mut n = vec![m.file_name().unwrap().to_str().unwrap()];
        n.extend_from_slice(needles);
        case(
            &[
                "predict",
                "--model",
                &p(m),
                &p(&fixture("golden/input_x.npy")),
            ],
            &n,
        )
    };
    // Checkpoints.
    let empty = t.join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    let noise = t.join("noise.pth");
    std::fs::write(
        &noise,
        (0..5000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let huge_len = t.join("huge_len.safetensors");
    let mut b = u64::MAX.to_le_bytes().to_vec();
    b.extend_from_slice(b"{\"blocks.0\":1}");
    std::fs::write(&huge_len, b).unwrap();
    let tensor = |dtype: &str, shape: &str, off: &str| {
        format!(
            r#"{{"blocks.0.norm1.weight":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{off}}}}}"#
        )
    };
    let outside = safetensors(t, "outside.safetensors", &tensor("F32", "[4]", "[0,16]"), 8);
    let mismatch = safetensors(t, "mismatch.safetensors", &tensor("F32", "[4]", "[0,8]"), 8);
    let overflow = safetensors(
        t,
        "overflow.safetensors",
        &tensor("F64", "[4294967296,4294967296,16]", "[0,8]"),
        8,
    );
    let no_json = safetensors(t, "nojson.safetensors", "{not json", 0);
    let bad_cfg = hf_folder(t, "strcfg", |c| c["hidden_size"] = "24".into());
    let bad_eps = hf_folder(t, "negeps", |c| c["layer_norm_eps"] = (-1.0).into());
    let few_layers = hf_folder(t, "layers", |c| c["num_hidden_layers"] = 1.into());
    let garbage_cfg = t.join("garbagecfg");
    std::fs::create_dir_all(&garbage_cfg).unwrap();
    std::fs::copy(
        fixture("loaders/hf_vit/model.safetensors"),
        garbage_cfg.join("model.safetensors"),
    )
    .unwrap();
    std::fs::write(garbage_cfg.join("config.json"), "{\"hidden_size\": [").unwrap();
    let mut cases = vec![
        model(&empty, &[]),
        model(&noise, &["unknown checkpoint layout"]),
        model(&huge_len, &["header of 18446744073709551615 bytes"]),
        model(&outside, &["outside"]),
        model(&mismatch, &["needs 16 bytes"]),
        model(&overflow, &["overflows"]),
        model(&no_json, &["not valid JSON"]),
        model(&bad_cfg, &["config.json", "hidden_size"]),
        model(&bad_eps, &["layer_norm_eps"]),
        model(&few_layers, &["config.json", "num_hidden_layers"]),
        model(&garbage_cfg, &["config.json"]),
        model(&t.join("missing.npz"), &["no such file"]),
    ];
    // Inputs.
    let fifo = t.join("fifo.png");
    let made_fifo = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    if made_fifo {
        cases.push(case(
            &["predict", &p(&fifo)],
            &["fifo.png", "not a regular file"],
        ));
    }
    let zero = t.join("zero.png");
    if Path::new("/dev/zero").exists() {
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        cases.push(case(
            &["predict", &p(&zero)],
            &["zero.png", "not a regular file"],
        ));
    }
    let truncated = t.join("truncated.png");
    std::fs::write(&truncated, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
    cases.push(case(&["predict", &p(&truncated)], &["truncated.png"]));
    let wrong_npy = t.join("wrong.npy");
    std::fs::write(&wrong_npy, b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'").unwrap();
    cases.push(case(&["predict", &p(&wrong_npy)], &["wrong.npy"]));
    let labels = t.join("labels.json");
    std::fs::write(&labels, "[1, -2]").unwrap();
    let x = p(&fixture("golden/input_x.npy"));
    let tiny = p(&fixture("golden/tiny_vit.npz"));
    cases.push(case(
        &[
            "discover",
            "--model",
            &tiny,
            &x,
            "--labels",
            &p(&labels),
            "-o",
            &out,
        ],
        &["labels.json"],
    ));
    let labels12 = t.join("labels12.json");
    std::fs::write(&labels12, "[1, 12]").unwrap();
    cases.push(case(
        &[
            "discover",
            "--model",
            &tiny,
            &x,
            "--labels",
            &p(&labels12),
            "--target",
            "predicted",
            "-o",
            &out,
        ],
        &["input_x.npy[1]", "label 12", "10 classes"],
    ));
    // Results files.
    let garbage = t.join("garbage.jsonl");
    std::fs::write(&garbage, "{\"kind\": \"header\", \"schema\": \"1.0\"}\n").unwrap();
    cases.push(case(
        &["atlas", "--results", &p(&garbage)],
        &["garbage.jsonl", "line 1"],
    ));
    let binary = t.join("binary.jsonl");
    std::fs::write(&binary, [0xffu8, 0xfe, 0, 1, 2, b'\n']).unwrap();
    cases.push(case(
        &["report", "--results", &p(&binary)],
        &["binary.jsonl"],
    ));
    for c in &cases {
        run(c);
    }
    assert!(
        !t.join("out.jsonl").exists()
            || std::fs::read_to_string(t.join("out.jsonl"))
                .unwrap()
                .lines()
                .count()
                <= 1
    );
}

#[test]
fn reference_layout_without_its_baseline_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("ref");
    for methods in ["path", "activation", "path,random"] {
        run(&case(
            &[
                "discover",
                "--no-report",
                "--methods",
                methods,
                "--reference-layout",
                &p(&prefix),
                "-o",
                &p(&dir.path().join("r.jsonl")),
            ],
            &["--reference-layout", "activation baseline"],
        ));
    }
    // Nothing written: neither the args file nor results.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
