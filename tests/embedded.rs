//! The embedded default: the shipped Fashion-MNIST ViT and its sample images.
use neuronpath::attribution::discover::{discover_batch, Method, Request, TargetKind};
use neuronpath::attribution::{AttributionError, AttributionSettings};
use neuronpath::embedded;
use neuronpath::io::inputs::{load_batch, Preprocess};
use neuronpath::io::preprocess::Normalization;
use neuronpath::model::{LoadOptions, Rows};

fn model() -> neuronpath::model::load::Loaded {
    embedded::model(&LoadOptions::default()).expect("the build embeds assets/fashion-mnist/model")
}

fn preprocess(loaded: &neuronpath::model::load::Loaded) -> Preprocess {
    let norm =
        Normalization::from_mean_std(loaded.normalization.expect("preprocessor_config.json"))
            .expect("a known normalisation");
    Preprocess {
        size: loaded.model.cfg.image_size,
        norm,
    }
}

#[test]
fn shipped_model_is_the_documented_architecture() {
    let cfg = model().model.cfg;
    // What the model card states: 6 layers x 256 MLP neurons.
    assert_eq!(cfg.layers, 6);
    assert_eq!(cfg.mlp_dim, 256);
    assert_eq!(cfg.num_classes, 10);
    let names = model().class_names.unwrap();
    assert_eq!(names[0], "T-shirt/top");
    assert_eq!(names[9], "Ankle boot");
}

#[test]
fn shipped_model_classifies_the_sample_images() {
    let loaded = model();
    let pre = preprocess(&loaded);
    let samples = embedded::samples();
    assert!(samples.items.len() >= 50, "ship about 10 samples per class");
    let items: Vec<_> = samples.items.iter().collect();
    let x = load_batch(&items, &pre, &candle_core::Device::Cpu).unwrap();
    let probs = loaded
        .model
        .probabilities(&x, &[])
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let correct = items
        .iter()
        .zip(&probs)
        .filter(|(it, p)| {
            neuronpath::attribution::top_k(&p.iter().map(|&v| v as f64).collect::<Vec<_>>(), 1)[0]
                == it.label.unwrap()
        })
        .count();
    let acc = correct as f64 / items.len() as f64;
    eprintln!("sample accuracy {correct}/{} = {acc:.3}", items.len());
    // The model's test accuracy is about 0.9; the samples are the first test images per class.
    assert!(acc >= 0.8, "accuracy on the shipped samples {acc}");
}

#[test]
fn discover_on_two_samples_finds_paths_with_positive_jas() {
    let loaded = model();
    let pre = preprocess(&loaded);
    let samples = embedded::samples();
    // The first image of two different classes.
    let first = &samples.items[0];
    let other = samples
        .items
        .iter()
        .find(|it| it.label != first.label)
        .unwrap();
    let x = load_batch(&[first, other], &pre, &candle_core::Device::Cpu).unwrap();
    let req = Request {
        settings: AttributionSettings {
            steps: 20,
            top_k: 1,
            compat: false,
            rows: Rows::Cls,
            chunk_rows: 1000,
            engine: Default::default(),
        },
        methods: vec![Method::Path, Method::Activation],
        target: TargetKind::Label,
        seed: 0,
    };
    let out = discover_batch(
        &loaded.model,
        &x,
        &[first.label, other.label],
        &[0, 1],
        &req,
    )
    .unwrap();
    for r in &out {
        let p = &r.methods[&Method::Path];
        assert_eq!(p.path.len(), loaded.model.cfg.layers);
        assert!(p.jas.reference > 0.0, "JAS {}", p.jas.reference);
    }
}

#[test]
fn a_label_target_without_a_label_is_a_typed_error_naming_the_image() {
    let loaded = model();
    let pre = preprocess(&loaded);
    let items = &embedded::samples().items;
    let x = load_batch(&[&items[0], &items[1]], &pre, &candle_core::Device::Cpu).unwrap();
    let req = Request {
        settings: AttributionSettings {
            steps: 2,
            top_k: 1,
            compat: false,
            rows: Rows::Cls,
            chunk_rows: 1000,
            engine: Default::default(),
        },
        methods: vec![Method::Activation],
        target: TargetKind::Label,
        seed: 0,
    };
    let err = discover_batch(&loaded.model, &x, &[items[0].label, None], &[0, 1], &req)
        .expect_err("the second image has no label");
    assert!(
        matches!(err, AttributionError::MissingLabel { image: 1 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("image 1"), "{err}");
}
