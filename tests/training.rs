//! Training on Fashion-MNIST, the IDX reader, the Hugging Face writer and the train/eval commands.
//!
//! The data is a committed subset (tests/fixtures/fashion-mnist: the first 512 training and 256
//! test images, made by scripts/make_fashion_mnist_subset.py): no installed data set is needed.
//! The full-data accuracy the model card states is checked by `.ci/run` with `neuronpath eval`.
use candle_core::{DType, Device, Tensor};
use flate2::write::GzEncoder;
use neuronpath::io::fashion_mnist::{self, DataError, FashionMnist, Split, CLASS_NAMES};
use neuronpath::io::preprocess::{load_image, Normalization};
use neuronpath::model::save::save_hf;
use neuronpath::model::{load_model, LoadOptions, Mode};
use neuronpath::training::{self, Arch, AugmentRecipe, Recipe, TrainOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fashion-mnist")
}

/// A fresh scratch folder under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("neuronpath-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

fn tiny() -> Arch {
    Arch {
        patch_size: 7,
        hidden: 16,
        layers: 2,
        heads: 2,
        mlp_dim: 32,
    }
}

fn tiny_recipe(epochs: usize, limit: usize) -> Recipe {
    Recipe {
        arch: tiny(),
        epochs,
        batch: 64,
        lr: 3e-3,
        warmup_epochs: 0.5,
        seed: 7,
        limit: Some(limit),
        ..Recipe::default()
    }
}

#[test]
fn training_lowers_the_loss() {
    let data = FashionMnist::load(&data_dir(), Split::Train)
        .unwrap()
        .truncate(512);
    // No augmentation, a high rate: a clear drop within a hundred steps.
    let recipe = Recipe {
        batch: 32,
        lr: 1e-2,
        augment: AugmentRecipe {
            max_shift: 0,
            flip: false,
        },
        ..tiny_recipe(6, 512)
    };
    let probe: Vec<usize> = (0..256).collect();
    let start = training::init_model(&recipe.arch, recipe.seed).unwrap();
    let before = training::loss(&start, &data, &probe).unwrap();
    let dir = scratch("loss");
    let trained = training::train(&recipe, &data, &dir, &TrainOptions::default()).unwrap();
    let after = training::loss(&trained.vit(), &data, &probe).unwrap();
    let h = &trained.history;
    assert!(
        after < 0.8 * before,
        "loss {before:.4} -> {after:.4} after training"
    );
    assert!(h[5].loss < h[0].loss, "epoch losses {h:?}");
    assert!(dir.join("state.json").is_file() && dir.join("weights.safetensors").is_file());
}

#[test]
fn resume_repeats_an_uninterrupted_run() {
    let data = FashionMnist::load(&data_dir(), Split::Train)
        .unwrap()
        .truncate(192);
    let recipe = tiny_recipe(2, 192);
    let (a, b) = (scratch("resume-a"), scratch("resume-b"));
    let whole = training::train(&recipe, &data, &a, &TrainOptions::default()).unwrap();
    let first = TrainOptions {
        stop_after: Some(1),
        ..Default::default()
    };
    let part = training::train(&recipe, &data, &b, &first).unwrap();
    assert_eq!(part.history.len(), 1);
    let rest = TrainOptions {
        resume: true,
        ..Default::default()
    };
    let resumed = training::train(&recipe, &data, &b, &rest).unwrap();
    assert_eq!(resumed.history.len(), 2);
    for (p, q) in whole.params.list.iter().zip(&resumed.params.list) {
        let diff = (p.var.as_tensor() - q.var.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "{} differs after resume", p.name);
    }
    // A different recipe does not resume silently.
    let other = Recipe {
        lr: 1e-4,
        ..recipe.clone()
    };
    let err = training::train(&other, &data, &b, &rest).err().unwrap();
    assert!(err.to_string().contains("different recipe"), "{err}");
}

#[test]
fn hugging_face_folder_round_trips() {
    let vit = training::init_model(&tiny(), 3).unwrap();
    // Weights of every scale, not just the tiny initial ones, so that any mix-up shows.
    let mut vit = vit;
    vit.pos = (vit.pos.randn_like(0.0, 1.0)).unwrap();
    vit.blocks[1].qkv.weight = vit.blocks[1].qkv.weight.randn_like(0.0, 0.5).unwrap();
    vit.blocks[0].qkv.bias = Some(
        vit.blocks[0]
            .qkv
            .bias
            .as_ref()
            .unwrap()
            .randn_like(0.0, 1.0)
            .unwrap(),
    );
    vit.patch.weight = vit.patch.weight.randn_like(0.0, 0.3).unwrap();
    vit.head.weight = vit.head.weight.randn_like(0.0, 1.0).unwrap();
    let dir = scratch("hf");
    let names: Vec<String> = CLASS_NAMES.iter().map(|s| s.to_string()).collect();
    save_hf(&vit, &dir, Some(&names), &training::preprocessing()).unwrap();
    let loaded = load_model(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.model.cfg, vit.cfg);
    assert_eq!(loaded.class_names.as_deref(), Some(names.as_slice()));
    assert_eq!(loaded.normalization, Some([[0.5; 3], [0.5; 3]]));
    assert_eq!(
        Normalization::from_mean_std(loaded.normalization.unwrap()),
        Some(Normalization::Half)
    );
    let x = Tensor::randn(0f32, 1.0, (3, 3, 28, 28), &Device::Cpu).unwrap();
    let want = vit.forward(&x, &[], None, Mode::Frozen).unwrap().logits;
    let got = loaded
        .model
        .forward(&x, &[], None, Mode::Frozen)
        .unwrap()
        .logits;
    let diff = (want - got).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(
        diff.to_scalar::<f32>().unwrap(),
        0.0,
        "logits differ after the round trip"
    );
    let pre: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("preprocessor_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(pre["image_mean"], serde_json::json!([0.5, 0.5, 0.5]));
    assert_eq!(pre["image_std"], serde_json::json!([0.5, 0.5, 0.5]));
    assert_eq!(pre["size"]["height"], 28);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model_type"], "vit");
    assert_eq!(cfg["label2id"]["Ankle boot"], 9);
}

/// Writes `bytes` gzipped to `path`.
fn write_gz(path: &Path, bytes: &[u8]) {
    let mut enc = GzEncoder::new(std::fs::File::create(path).unwrap(), Default::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap();
}

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

/// A folder with a test split of `n` images and the given label file contents.
fn fake_split(name: &str, images: Vec<u8>, labels: Vec<u8>) -> Scratch {
    let dir = scratch(name);
    let (i, l) = Split::Test.files();
    write_gz(&dir.join(i), &images);
    write_gz(&dir.join(l), &labels);
    dir
}

#[test]
fn idx_reader_checks_its_files() {
    let pixels: Vec<u8> = (0..2 * 784).map(|i| (i % 251) as u8).collect();
    let good_images = idx(0x803, &[2, 28, 28], &pixels);
    let good_labels = idx(0x801, &[2], &[3, 9]);
    let (img_name, lab_name) = Split::Test.files();

    let dir = fake_split("idx-good", good_images.clone(), good_labels.clone());
    let d = FashionMnist::load(&dir, Split::Test).unwrap();
    assert_eq!((d.len(), d.labels.clone()), (2, vec![3, 9]));
    assert_eq!(d.image(1), &pixels[784..]);

    let check = |name: &str, images: Vec<u8>, labels: Vec<u8>, file: &str, words: &str| {
        let dir = fake_split(name, images, labels);
        let err = FashionMnist::load(&dir, Split::Test).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(file), "error does not name {file}: {msg}");
        assert!(msg.contains(words), "expected `{words}` in: {msg}");
        err
    };
    let err = check(
        "idx-magic",
        idx(0x801, &[2, 28, 28], &pixels),
        good_labels.clone(),
        img_name,
        "magic",
    );
    assert!(matches!(err, DataError::BadMagic { .. }));
    let err = check(
        "idx-trunc",
        good_images[..good_images.len() - 100].to_vec(),
        good_labels.clone(),
        img_name,
        "truncated",
    );
    assert!(matches!(err, DataError::Truncated { .. }));
    check(
        "idx-count",
        good_images.clone(),
        idx(0x801, &[3], &[1, 2, 3]),
        lab_name,
        "3 labels for the 2 images",
    );
    check(
        "idx-label",
        good_images.clone(),
        idx(0x801, &[2], &[1, 10]),
        lab_name,
        "not a class",
    );
    check(
        "idx-extra",
        idx(0x803, &[1, 28, 28], &pixels),
        good_labels.clone(),
        img_name,
        "bytes after",
    );

    // Not gzip at all.
    let dir = fake_split("idx-gzip", good_images, good_labels);
    std::fs::write(dir.join(img_name), b"not a gzip stream").unwrap();
    let err = FashionMnist::load(&dir, Split::Test).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err}");
    assert!(err.to_string().contains(img_name));

    let err = FashionMnist::load(&dir.join("nowhere"), Split::Test).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }));
    assert!(err.to_string().contains("dataset-fashion-mnist"), "{err}");
}

#[test]
fn exported_pngs_give_the_idx_inputs() {
    let test = FashionMnist::load(&data_dir(), Split::Test).unwrap();
    let dir = scratch("samples");
    let written = fashion_mnist::export_samples(&test, &dir, 2).unwrap();
    assert_eq!(written.len(), 20);
    let first_sandal = (0..test.len()).find(|&i| test.labels[i] == 5).unwrap();
    let png = dir.join(format!("05-sandal/test-{first_sandal:05}.png"));
    assert!(written.contains(&png), "{written:?}");
    assert!(dir.join("00-t-shirt-top").is_dir() && dir.join("09-ankle-boot").is_dir());
    // The project's image pipeline (PNG -> RGB -> resize to 28 -> Normalize(0.5, 0.5)) gives
    // exactly the tensor `eval` builds from the IDX pixels.
    let from_png = load_image(&png, 28, Normalization::Half).unwrap();
    let from_idx: Vec<f32> = test
        .batch(&[first_sandal], &Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(from_png, from_idx);
    assert_eq!(test.batch(&[0], &Device::Cpu).unwrap().dtype(), DType::F32);
}

#[test]
fn train_and_eval_commands() {
    let data = data_dir();
    let out = scratch("cli");
    let bin = env!("CARGO_BIN_EXE_neuronpath");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin).args(args).output().unwrap();
        let text =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "neuronpath {args:?} failed:\n{text}");
        text
    };
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let tiny = [
        "--limit",
        "256",
        "--epochs",
        "1",
        "--batch",
        "64",
        "--hidden",
        "16",
        "--layers",
        "1",
        "--heads",
        "2",
        "--mlp-dim",
        "32",
    ];
    let mut args = vec!["train", "--data", d, "--out", o];
    args.extend(tiny);
    run(&args);
    let model = out.join("model");
    for f in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "README.md",
    ] {
        assert!(model.join(f).is_file(), "{f} missing");
    }
    let card = std::fs::read_to_string(model.join("README.md")).unwrap();
    assert!(
        card.contains("--limit 256") && card.contains("Test accuracy"),
        "{card}"
    );
    let text = run(&["eval", "--model", model.to_str().unwrap(), "--data", d]);
    assert!(
        text.contains("test accuracy") && text.contains("Ankle boot"),
        "{text}"
    );

    let samples = scratch("cli-samples");
    run(&[
        "train",
        "--data",
        d,
        "--export-samples",
        samples.to_str().unwrap(),
        "--per-class",
        "1",
    ]);
    let classes: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(samples.join("classes.json")).unwrap())
            .unwrap();
    assert_eq!(classes, CLASS_NAMES);
    assert_eq!(
        std::fs::read_dir(samples.join("samples")).unwrap().count(),
        10
    );
}

/// The shipped model and samples: what users load is what the card says.
#[test]
fn shipped_assets_match_their_card() {
    let assets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist");
    let test = FashionMnist::load(&data_dir(), Split::Test).unwrap();
    let loaded = load_model(&assets.join("model"), &LoadOptions::default()).unwrap();
    assert_eq!(loaded.model.cfg, Arch::EMBEDDED.config());
    // On the first 256 test images (the committed subset); the card's full-split figure is
    // checked by .ci/run with `neuronpath eval`.
    let first = test.truncate(256);
    let acc = training::evaluate(&loaded.model, &first, 500)
        .unwrap()
        .accuracy();
    assert!(
        acc >= 0.85,
        "shipped model: accuracy {acc} on the first 256 test images"
    );
    let test = FashionMnist::load(&data_dir(), Split::Test).unwrap();
    let classes: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(assets.join("classes.json")).unwrap())
            .unwrap();
    assert_eq!(classes, CLASS_NAMES);
    // Every sample is the test image its name gives, in its class's folder.
    let mut count = 0;
    for (class, _) in CLASS_NAMES.iter().enumerate() {
        let dir = assets.join(format!(
            "samples/{class:02}-{}",
            fashion_mnist::class_slug(class)
        ));
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap();
            let index: usize = name.strip_prefix("test-").unwrap().parse().unwrap();
            assert_eq!(test.labels[index] as usize, class, "{}", path.display());
            let gray = image::open(&path).unwrap().to_luma8();
            assert_eq!(
                gray.as_raw().as_slice(),
                test.image(index),
                "{}",
                path.display()
            );
            count += 1;
        }
    }
    assert_eq!(count, 100);
}
