//! Bounded reading of hostile inputs: images are refused from their header when they hold more
//! pixels than the cap (PIL's MAX_IMAGE_PIXELS), and only regular files are ever read.
use neuronpath::io::preprocess::{decode_rgb, decode_rgb_bytes, decode_rgb_bytes_capped};
use std::io::Cursor;
use std::path::Path;

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend(kind);
    out.extend(data);
    out.extend(crc.sum().to_be_bytes());
}

/// A PNG that declares `w` x `h` 8-bit grayscale pixels but holds almost no data (a few hundred
/// bytes that would decode to w*h bytes).
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn small_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(16, 8, image::Rgb([10, 200, 30]));
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Jpeg).unwrap();
    buf.into_inner()
}

#[test]
fn png_over_the_pixel_cap_is_refused_before_decoding() {
    let png = png_header_only(20000, 20000);
    assert!(png.len() < 100);
    let e = decode_rgb_bytes(&png, "bomb.png").unwrap_err().to_string();
    assert!(
        e.contains("bomb.png is 20000x20000 = 400000000 pixels, over the cap of 89478485"),
        "{e}"
    );
    assert!(!e.contains('\n'));
}

#[test]
fn jpeg_over_the_pixel_cap_is_refused_before_decoding() {
    let mut jpg = small_jpeg();
    assert!(decode_rgb_bytes(&jpg, "ok.jpg").is_ok());
    // Rewrite the frame header (SOF0: FF C0, length, precision, height, width) to 60000x60000.
    let sof = jpg
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("baseline JPEG");
    jpg[sof + 5..sof + 7].copy_from_slice(&60000u16.to_be_bytes());
    jpg[sof + 7..sof + 9].copy_from_slice(&60000u16.to_be_bytes());
    let e = decode_rgb_bytes(&jpg, "big.jpg").unwrap_err().to_string();
    assert!(
        e.contains("60000x60000") && e.contains("over the cap"),
        "{e}"
    );
}

#[test]
fn the_cap_is_a_parameter() {
    let jpg = small_jpeg();
    assert!(decode_rgb_bytes_capped(&jpg, "x", 128).is_ok());
    let e = decode_rgb_bytes_capped(&jpg, "x", 127)
        .unwrap_err()
        .to_string();
    assert!(e.contains("16x8 = 128 pixels, over the cap of 127"), "{e}");
}

#[test]
fn devices_fifos_and_folders_are_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let check = |p: &Path| {
        let e = decode_rgb(p).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{}: {e}", p.display());
    };
    if Path::new("/dev/zero").exists() {
        let link = dir.path().join("zero.png");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        check(&link);
    }
    check(dir.path());
    let fifo = dir.path().join("pipe.png");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    if made {
        // Opening a FIFO for reading would block forever: it must be refused before opening.
        check(&fifo);
    } else {
        eprintln!("skipping the FIFO case: mkfifo unavailable");
    }
}

mod npz {
    use neuronpath::model::{load_model, LoadOptions};
    use std::io::Write;
    use std::path::{Path, PathBuf};

    fn npy(descr: &str, shape: &str, data_len: usize) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (h.len() + 11) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend(vec![0u8; data_len]);
        out
    }

    fn write_zip(path: &Path, members: &[(&str, &[u8], bool)]) {
        let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        for (name, bytes, deflate) in members {
            let method = if *deflate {
                zip::CompressionMethod::Deflated
            } else {
                zip::CompressionMethod::Stored
            };
            let o = zip::write::SimpleFileOptions::default()
                .compression_method(method)
                .large_file(bytes.len() > u32::MAX as usize);
            z.start_file(*name, o).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    }

    fn err(path: &Path) -> String {
        let e = load_model(path, &LoadOptions::default())
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
        e
    }

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/loaders/google_vit.npz")
    }

    #[test]
    fn npz_member_with_a_bad_crc_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = std::fs::read(fixture()).unwrap();
        // The first member is stored: flip a byte of its data, far past the local header.
        let at = 30 + 200;
        bytes[at] ^= 0x55;
        let p = dir.path().join("crc.npz");
        std::fs::write(&p, &bytes).unwrap();
        let e = err(&p);
        assert!(e.contains("checksum") || e.contains("corrupt"), "{e}");
    }

    #[test]
    fn npy_header_declaring_more_than_the_member_holds_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.npz");
        let m = npy("<f4", "(100000000000,)", 16);
        write_zip(&p, &[("embedding/kernel.npy", &m, false)]);
        let e = err(&p);
        assert!(
            e.contains("declares shape [100000000000]") && e.contains("holds 16 data bytes"),
            "{e}"
        );
    }

    #[test]
    fn deflate_bomb_is_refused_before_inflating() {
        // 300 MB of zeros deflate to ~300 KB: over 64x the file plus 256 MiB.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bomb.npz");
        let n = 300 << 20;
        let m = npy("<f4", &format!("({},)", n / 4), n);
        write_zip(&p, &[("embedding/kernel.npy", &m, true)]);
        drop(m);
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len < 1 << 20, "{len}");
        let e = err(&p);
        assert!(e.contains("over the decoding cap"), "{e}");
    }
}
