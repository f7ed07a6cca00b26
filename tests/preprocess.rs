//! Preprocessing parity with PIL + torchvision (golden arrays from the authors' pipeline), image
//! decoding edge cases, and the data set readers.
use std::fs;
use std::path::{Path, PathBuf};

use image::{ImageBuffer, Luma, LumaA, Rgb, RgbImage, Rgba};
use neuronpath::io::dataset::{
    read_input_npy, read_labels_json, read_npy_f32, DatasetError, ImageFolder,
};
use neuronpath::io::preprocess::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/preproc")
        .join(name)
}

/// A fresh empty directory under the system temp dir, unique per test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("neuronpath-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Reads the golden HWC uint8 arrays (`|u1`, C order, version 1 header).
fn read_u8_npy(path: &Path) -> (Vec<usize>, Vec<u8>) {
    let bytes = fs::read(path).unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY\x01"));
    let start = 10 + usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let header = std::str::from_utf8(&bytes[10..start]).unwrap();
    assert!(header.contains("'descr': '|u1'") && header.contains("'fortran_order': False"));
    let shape = header.split_once("'shape': (").unwrap().1;
    let shape: Vec<usize> = shape
        .split_once(')')
        .unwrap()
        .0
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    (shape, bytes[start..].to_vec())
}

fn golden_rgb(name: &str) -> RgbImage {
    let (shape, data) = read_u8_npy(&fixture(name));
    assert_eq!(shape.len(), 3);
    assert_eq!(shape[2], 3);
    RgbImage::from_raw(shape[1] as u32, shape[0] as u32, data).unwrap()
}

fn golden_tensor(name: &str) -> Vec<f32> {
    let (shape, data) = read_npy_f32(&fixture(name)).unwrap();
    assert_eq!(shape, [3, 224, 224]);
    data
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn max_level_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap()
}

#[test]
fn decoded_png_equals_pil() {
    let ours = decode_rgb(&fixture("preproc_input_50x37.png")).unwrap();
    assert_eq!(ours, golden_rgb("preproc_decoded_png.npy"));
}

#[test]
fn png_pipeline_upscale_is_bit_exact() {
    let ours = load_image(
        &fixture("preproc_input_50x37.png"),
        224,
        Normalization::ImageNet,
    )
    .unwrap();
    assert_eq!(ours, golden_tensor("preproc_expected_png.npy"));
}

#[test]
fn png_pipeline_downscale_is_bit_exact() {
    // 500x375 -> 224x224 exercises the widened (antialiasing) filter.
    let ours = load_image(
        &fixture("preproc_input_500x375.png"),
        224,
        Normalization::ImageNet,
    )
    .unwrap();
    assert_eq!(ours, golden_tensor("preproc_expected_500x375.npy"));
}

#[test]
fn resize_of_pil_decoded_jpeg_is_bit_exact() {
    // Feeding PIL's own decoded pixels isolates the resize + normalise from decoder differences.
    let ours = preprocess_rgb(
        &golden_rgb("preproc_decoded_jpg.npy"),
        224,
        Normalization::ImageNet,
    );
    assert_eq!(ours, golden_tensor("preproc_expected_jpg.npy"));
}

/// zune-jpeg (used by `image`) and PIL's libjpeg-turbo differ in IDCT, chroma upsampling and
/// colour-conversion rounding; zune also upsamples the last chroma column from MCU padding where
/// libjpeg replicates the edge sample, so the rightmost pixel column deviates most.
#[test]
fn jpeg_decoder_deviation_is_bounded() {
    let path = fixture("preproc_input_50x37.jpg");
    let ours = decode_rgb(&path).unwrap();
    let pil = golden_rgb("preproc_decoded_jpg.npy");
    let (w, h) = ours.dimensions();
    let levels = max_level_diff(&ours, &pil);
    let inner = max_level_diff(
        &image::imageops::crop_imm(&ours, 0, 0, w - 1, h).to_image(),
        &image::imageops::crop_imm(&pil, 0, 0, w - 1, h).to_image(),
    );
    // Measured: 24 levels in the last column, 3 levels elsewhere.
    assert!(levels <= 24, "decoded pixels differ by {levels} levels");
    assert!(
        inner <= 3,
        "decoded pixels left of the last column differ by {inner} levels"
    );

    let ours = load_image(&path, 224, Normalization::ImageNet).unwrap();
    let expected = golden_tensor("preproc_expected_jpg.npy");
    let max = max_abs_diff(&ours, &expected);
    let mean = ours
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / ours.len() as f32;
    // Output columns >= 213 of the 50 -> 224 upscale read source column 49.
    let left = |t: &[f32]| -> Vec<f32> {
        t.chunks_exact(224)
            .flat_map(|row| row[..213].to_vec())
            .collect()
    };
    let max_left = max_abs_diff(&left(&ours), &left(&expected));
    // Measured (normalised units): max 0.4009 (the edge column), 0.0523 left of it (3 levels
    // / 255 / std), mean 0.0087.
    assert!(max <= 0.41, "tensor max deviation {max}");
    assert!(
        max_left <= 0.06,
        "tensor deviation left of the edge columns {max_left}"
    );
    assert!(mean <= 0.01, "tensor mean deviation {mean}");
}

#[test]
fn color_types_convert_like_pil() {
    let dir = temp_dir("colors");
    let save = |name: &str, f: &dyn Fn(&Path)| {
        let p = dir.join(name);
        f(&p);
        decode_rgb(&p).unwrap()
    };
    let gray = save("l8.png", &|p| {
        ImageBuffer::from_fn(3, 2, |x, y| Luma([(x * 40 + y * 100) as u8]))
            .save(p)
            .unwrap()
    });
    assert_eq!(gray.get_pixel(2, 1), &Rgb([180, 180, 180]));
    let la = save("la8.png", &|p| {
        ImageBuffer::from_fn(3, 2, |x, _| LumaA([x as u8 * 50, 7]))
            .save(p)
            .unwrap()
    });
    assert_eq!(la.get_pixel(2, 0), &Rgb([100, 100, 100]));
    // Alpha is dropped, not composited.
    let rgba = save("rgba8.png", &|p| {
        ImageBuffer::from_fn(3, 2, |x, y| Rgba([x as u8, y as u8, 200, 0]))
            .save(p)
            .unwrap()
    });
    assert_eq!(rgba.get_pixel(1, 1), &Rgb([1, 1, 200]));
    // 16-bit RGB(A) and gray+alpha keep the high byte; 16-bit gray clips at 255 (PIL "I;16").
    let rgb16 = save("rgb16.png", &|p| {
        ImageBuffer::from_pixel(2, 2, Rgb([0x12ffu16, 0x00ff, 0xffff]))
            .save(p)
            .unwrap()
    });
    assert_eq!(rgb16.get_pixel(0, 0), &Rgb([0x12, 0x00, 0xff]));
    let rgba16 = save("rgba16.png", &|p| {
        ImageBuffer::from_pixel(2, 2, Rgba([0x8180u16, 0x0101, 0x7f7f, 0]))
            .save(p)
            .unwrap()
    });
    assert_eq!(rgba16.get_pixel(1, 0), &Rgb([0x81, 0x01, 0x7f]));
    let la16 = save("la16.png", &|p| {
        ImageBuffer::from_pixel(2, 2, LumaA([0xabcdu16, 0x1234]))
            .save(p)
            .unwrap()
    });
    assert_eq!(la16.get_pixel(0, 1), &Rgb([0xab; 3]));
    let l16 = save("l16.png", &|p| {
        ImageBuffer::from_fn(3, 1, |x, _| Luma([[200u16, 255, 256][x as usize]]))
            .save(p)
            .unwrap()
    });
    assert_eq!(l16.as_raw(), &[200, 200, 200, 255, 255, 255, 255, 255, 255]);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn cmyk_jpeg_converts_like_pil() {
    // Adobe CMYK JPEG written by Pillow; the .npy is PIL's convert("RGB") of it.
    let ours = decode_rgb(&fixture("cmyk_16x8.jpg")).unwrap();
    let levels = max_level_diff(&ours, &golden_rgb("cmyk_16x8_decoded.npy"));
    // Measured: 1 level (IDCT rounding); a wrong CMYK formula or inversion would be far off.
    assert!(levels <= 1, "CMYK decode differs by {levels} levels");
}

#[test]
fn resize_matches_pillow_on_every_pass_combination() {
    let src = golden_rgb("resize_src_45x90.npy");
    for (w, h) in [(70, 31), (45, 29), (19, 90), (13, 7)] {
        let expected = golden_rgb(&format!("resize_pil12_{w}x{h}.npy"));
        assert_eq!(resize_bilinear_pil(&src, w, h), expected, "{w}x{h}");
    }
}

#[test]
fn resize_skips_unchanged_axes_and_handles_identity() {
    let img = ImageBuffer::from_fn(5, 4, |x, y| Rgb([x as u8 * 50, y as u8 * 60, 9]));
    assert_eq!(resize_bilinear_pil(&img, 5, 4), img);
    // Only the vertical pass runs: each column is resampled independently.
    let tall = resize_bilinear_pil(&img, 5, 8);
    assert_eq!(tall.dimensions(), (5, 8));
    assert!(tall.pixels().all(|p| p[2] == 9));
    assert_eq!(tall.get_pixel(3, 0)[0], 150);
    // Degenerate sizes must not panic.
    assert_eq!(resize_bilinear_pil(&img, 0, 3).dimensions(), (0, 3));
    assert_eq!(resize_bilinear_pil(&img, 1, 1).dimensions(), (1, 1));
}

#[test]
fn corrupt_files_are_errors_naming_the_file() {
    let dir = temp_dir("corrupt");
    let png = fs::read(fixture("preproc_input_50x37.png")).unwrap();
    let jpg = fs::read(fixture("preproc_input_50x37.jpg")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.png", png[..png.len() / 2].to_vec()),
        ("header_only.png", png[..40].to_vec()),
        (
            "garbage.jpg",
            b"this is not an image at all, just some bytes".repeat(20),
        ),
        ("jpeg_header_only.jpg", jpg[..200].to_vec()),
        // zune-jpeg alone would decode these, filling in gray; PIL refuses them.
        ("truncated.jpg", jpg[..jpg.len() * 3 / 4].to_vec()),
        ("no_eoi.jpg", jpg[..jpg.len() - 2].to_vec()),
        ("empty.png", Vec::new()),
    ];
    for (name, bytes) in cases {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        let err = decode_rgb(&path).expect_err(name);
        assert!(err.to_string().contains(name), "{err}");
        assert!(load_image(&path, 224, Normalization::Half).is_err());
    }
    let png_bytes = fs::read(fixture("preproc_input_50x37.png")).unwrap();
    let from_memory = decode_rgb_bytes(&png_bytes, "embedded:x").unwrap();
    assert_eq!(from_memory, golden_rgb("preproc_decoded_png.npy"));
    let err = decode_rgb_bytes(&png_bytes[..100], "embedded:x").unwrap_err();
    assert!(err.to_string().contains("embedded:x"), "{err}");
    let missing = dir.join("missing.png");
    let err = decode_rgb(&missing).unwrap_err();
    assert!(matches!(err, PreprocessError::Io { .. }) && err.to_string().contains("missing.png"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn normalization_names_and_values() {
    for n in [Normalization::ImageNet, Normalization::Half] {
        assert_eq!(n.to_string().parse::<Normalization>().unwrap(), n);
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, format!("\"{n}\""));
        assert_eq!(serde_json::from_str::<Normalization>(&json).unwrap(), n);
    }
    assert!("bogus".parse::<Normalization>().is_err());
    assert_eq!(Normalization::Half.mean_std(), ([0.5; 3], [0.5; 3]));
    let img = RgbImage::from_pixel(1, 1, Rgb([0, 255, 51]));
    assert_eq!(
        to_normalized_chw(&img, Normalization::Half),
        [-1.0, 1.0, -0.6]
    );
    let imagenet = [[0.485, 0.456, 0.406], [0.229, 0.224, 0.225]];
    assert_eq!(
        Normalization::from_mean_std(imagenet),
        Some(Normalization::ImageNet)
    );
    // As written back from f32 by a checkpoint's preprocessor_config.json.
    let f32_printed = imagenet.map(|v| v.map(|x| f64::from(x as f32)));
    assert_eq!(
        Normalization::from_mean_std(f32_printed),
        Some(Normalization::ImageNet)
    );
    assert_eq!(
        Normalization::from_mean_std([[0.5; 3]; 2]),
        Some(Normalization::Half)
    );
    assert_eq!(Normalization::from_mean_std([[0.5; 3], [0.25; 3]]), None);
    let (mean, std) = Normalization::ImageNet.mean_std();
    assert_eq!(mean, [0.485, 0.456, 0.406]);
    assert_eq!(std, [0.229, 0.224, 0.225]);
}

#[test]
fn image_folder_lists_like_torchvision() {
    let root = temp_dir("folder");
    for (rel, bytes) in [
        ("n02/b.JPG", &b"x"[..]),
        ("n02/a.png", b"x"),
        ("n02/notes.txt", b"x"),
        ("n02/sub/c.jpeg", b"x"),
        ("n01/z.jpg", b"x"),
        ("n01/y.jpeg", b"x"),
        ("stray.jpg", b"x"),
    ] {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
    let ds = ImageFolder::open(&root).unwrap();
    assert_eq!(ds.classes, ["n01", "n02"]);
    let rel: Vec<(String, usize)> = ds
        .items
        .iter()
        .map(|(p, c)| {
            (
                p.strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                *c,
            )
        })
        .collect();
    let expect = [
        ("n01/y.jpeg", 0),
        ("n01/z.jpg", 0),
        ("n02/a.png", 1),
        ("n02/b.JPG", 1),
        ("n02/sub/c.jpeg", 1),
    ];
    assert_eq!(rel, expect.map(|(p, c)| (p.to_string(), c)));

    // A class without images, a root without classes, a file root and a missing root fail.
    fs::create_dir(root.join("n03")).unwrap();
    assert!(matches!(
        ImageFolder::open(&root),
        Err(DatasetError::EmptyClasses { .. })
    ));
    let bare = root.join("n03");
    assert!(matches!(
        ImageFolder::open(&bare),
        Err(DatasetError::NoClasses { .. })
    ));
    let file = root.join("stray.jpg");
    assert!(matches!(
        ImageFolder::open(&file),
        Err(DatasetError::NotADirectory { .. })
    ));
    let err = ImageFolder::open(&root.join("nope")).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let _ = fs::remove_dir_all(&root);
}

/// A version-1 `.npy` file: header padded to a multiple of 64 bytes, then `data`.
fn npy_bytes(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let fortran = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

#[test]
fn npy_reader_accepts_f32_and_f64() {
    let dir = temp_dir("npy_ok");
    let values = [1.5f64, -2.25, 3.0e-8, 7.0, 0.1, 42.0];
    let f32_bytes: Vec<u8> = values
        .iter()
        .flat_map(|&v| (v as f32).to_le_bytes())
        .collect();
    let f64_bytes: Vec<u8> = values.iter().flat_map(|&v| v.to_le_bytes()).collect();
    let expect: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    for (name, descr, data) in [("a.npy", "<f4", &f32_bytes), ("b.npy", "<f8", &f64_bytes)] {
        let p = dir.join(name);
        fs::write(&p, npy_bytes(descr, false, "(2, 3)", data)).unwrap();
        assert_eq!(read_npy_f32(&p).unwrap(), (vec![2, 3], expect.clone()));
    }
    let p = dir.join("scalar.npy");
    fs::write(&p, npy_bytes("<f4", false, "()", &2.5f32.to_le_bytes())).unwrap();
    assert_eq!(read_npy_f32(&p).unwrap(), (vec![], vec![2.5]));

    let p = dir.join("x.npy");
    let data: Vec<u8> = (0..2 * 3 * 4 * 5)
        .flat_map(|i| (i as f32).to_le_bytes())
        .collect();
    fs::write(&p, npy_bytes("<f4", false, "(2, 3, 4, 5)", &data)).unwrap();
    let (n, c, h, w, x) = read_input_npy(&p).unwrap();
    assert_eq!((n, c, h, w), (2, 3, 4, 5));
    assert_eq!(x[119], 119.0);
    // (3, 224, 224) has no batch axis.
    assert!(read_input_npy(&fixture("preproc_expected_png.npy")).is_err());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn npy_reader_rejects_bad_files() {
    let dir = temp_dir("npy_bad");
    let data: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let good = npy_bytes("<f4", false, "(2, 3)", &data);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("magic.npy", b"NOTNUMPY and more bytes here".to_vec()),
        ("empty.npy", Vec::new()),
        ("short_header.npy", good[..30].to_vec()),
        ("truncated_data.npy", good[..good.len() - 3].to_vec()),
        ("extra_data.npy", [&good[..], &[0u8; 4]].concat()),
        ("fortran.npy", npy_bytes("<f4", true, "(2, 3)", &data)),
        ("int.npy", npy_bytes("<i4", false, "(2, 3)", &data)),
        ("big_endian.npy", npy_bytes(">f4", false, "(2, 3)", &data)),
        ("bad_shape.npy", npy_bytes("<f4", false, "(2, x)", &data)),
        (
            "huge_shape.npy",
            npy_bytes("<f4", false, "(18446744073709551615, 4)", &data),
        ),
        (
            "no_descr.npy",
            good.iter()
                .map(|&b| if b == b'd' { b'D' } else { b })
                .collect(),
        ),
    ];
    for (name, bytes) in cases {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        let err = read_npy_f32(&p).expect_err(name);
        assert!(err.to_string().contains(name), "{err}");
    }
    let p = dir.join("rank2.npy");
    fs::write(&p, &good).unwrap();
    assert!(read_input_npy(&p)
        .unwrap_err()
        .to_string()
        .contains("(N, 3, H, W)"));
    assert!(matches!(
        read_npy_f32(&dir.join("missing.npy")),
        Err(DatasetError::Io { .. })
    ));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn labels_json() {
    let dir = temp_dir("labels");
    let p = dir.join("labels.json");
    fs::write(&p, "[3, 0, 999]").unwrap();
    assert_eq!(read_labels_json(&p, None).unwrap(), [3, 0, 999]);
    for bad in [
        "[1, -2]",
        "[1.5]",
        "{\"a\": 1}",
        "[1,",
        "[null]",
        "[\"Coat\"]",
    ] {
        fs::write(&p, bad).unwrap();
        let err = read_labels_json(&p, None).expect_err(bad);
        assert!(err.to_string().contains("labels.json"), "{err}");
    }
    // Class names, resolved against the model's names (exactly, else ignoring case).
    let names: Vec<String> = ["T-shirt/top", "Coat", "Ankle boot"]
        .map(String::from)
        .to_vec();
    fs::write(&p, r#"[2, "Coat", "ankle boot", "T-shirt/top"]"#).unwrap();
    assert_eq!(read_labels_json(&p, Some(&names)).unwrap(), [2, 1, 2, 0]);
    fs::write(&p, r#"["Sandal"]"#).unwrap();
    let err = read_labels_json(&p, Some(&names)).unwrap_err().to_string();
    assert!(
        err.contains("no class is named \"Sandal\"") && err.contains("Coat"),
        "{err}"
    );
    let _ = fs::remove_dir_all(&dir);
}
