//! `neuronpath explain` end to end on the embedded model: the printed path, the picture (SVG and
//! PNG), the maps as .npy equal to the JSON, class names, and refusing to replace foreign files.
use candle_core::Tensor;
use serde_json::Value;
use std::process::Command;

fn explain(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_neuronpath"))
        .arg("explain")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn explain_writes_the_picture_the_maps_and_prints_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("sub/shoe");
    let p = prefix.to_str().unwrap();
    let o = explain(&["--index", "3", "--map-steps", "16", "-o", p]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("JAS") && stdout.contains("layer  neuron"),
        "{stdout}"
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("sub/shoe.json")).unwrap())
            .unwrap();
    let e = &json["explanation"];
    let layers = e["path"].as_array().unwrap().len();
    assert_eq!(layers, 6);
    // The contributions are the additive JAS's terms.
    let sum: f64 = e["contributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    let additive = e["jas"]["additive"].as_f64().unwrap();
    assert!(
        (sum - additive).abs() < 1e-9 * additive.abs().max(1.0),
        "{sum} vs {additive}"
    );
    // Every path neuron printed with its unit.
    for (l, u) in e["path"].as_array().unwrap().iter().enumerate() {
        let line = format!("{l:>5}  {:>6}", u.as_u64().unwrap());
        assert!(stdout.contains(&line), "{line:?} in {stdout}");
    }
    // The .npy holds the same maps, (L+1, G, G), the path's last.
    let grid = e["spatial"]["grid"].as_u64().unwrap() as usize;
    let maps = Tensor::read_npy(dir.path().join("sub/shoe.npy")).unwrap();
    assert_eq!(maps.dims(), &[layers + 1, grid, grid]);
    let flat: Vec<f64> = maps.flatten_all().unwrap().to_vec1().unwrap();
    let want: Vec<f64> = e["spatial"]["neurons"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&e["spatial"]["path"]])
        .flat_map(|m| m["patches"].as_array().unwrap().clone())
        .map(|v| v.as_f64().unwrap())
        .collect();
    // (serde_json's default float parsing may be off in the last bit.)
    assert_eq!(flat.len(), want.len());
    for (a, b) in flat.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-15 * a.abs().max(1e-300), "{a} vs {b}");
    }
    // The picture: an SVG with one heat map per layer plus the path's, and a PNG of it.
    let svg = std::fs::read_to_string(dir.path().join("sub/shoe.svg")).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert_eq!(svg.matches("<image").count(), layers + 2);
    let png = image::open(dir.path().join("sub/shoe.png")).unwrap();
    assert!(png.width() >= 900 && png.height() > 300);
    // Re-running replaces our own outputs.
    let o = explain(&[
        "--index",
        "3",
        "--map-steps",
        "4",
        "--class",
        "trouser",
        "-o",
        p,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("p(Trouser)"));
}

#[test]
fn explain_refuses_foreign_files_and_bad_classes() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("fig");
    std::fs::write(dir.path().join("fig.png"), b"someone else's picture").unwrap();
    let p = prefix.to_str().unwrap();
    let o = explain(&["--map-steps", "2", "-o", p]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("fig.png")).unwrap(),
        b"someone else's picture"
    );
    for (class, says) in [
        ("Bicycle", "not a class index or one of"),
        ("10", "10 classes"),
    ] {
        let o = explain(&["--map-steps", "2", "--force", "--class", class, "-o", p]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says) && err.lines().count() <= 2, "{err}");
    }
    let o = explain(&["--index", "100", "-o", p]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--index 100"));
}
