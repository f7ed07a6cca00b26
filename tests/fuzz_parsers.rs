//! Seeded fuzzing of every checkpoint parser: thousands of mutated real files (pickle VM, `.npy`
//! header, `.npz`, `.pth`, safetensors, config.json). Each input must give an error or a valid
//! model: no panic, no abort, and no single allocation above the decoding cap (a counting global
//! allocator watches every allocation of this test binary).
mod common;
use common::fixture;
use neuronpath::model::load::{npy, pickle};
use neuronpath::model::{load_model, LoadOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The default decoding cap for a file under 1 MB: 64 MB plus the 256 MiB allowance.
const CAP: usize = (64 << 20) + (256 << 20);

fn assert_under_cap(what: &str) {
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest <= CAP, "{what}: an allocation of {largest} bytes");
}

/// One random edit: flip bits, overwrite with an extreme byte, insert, delete, or duplicate a run.
fn mutate(rng: &mut ChaCha8Rng, src: &[u8], focus: usize) -> Vec<u8> {
    let mut v = src.to_vec();
    let edits = rng.random_range(1..=4);
    for _ in 0..edits {
        if v.is_empty() {
            v.push(rng.random());
            continue;
        }
        // Half of the edits land in the first `focus` bytes (headers), the rest anywhere.
        let span = if rng.random_bool(0.5) {
            focus.min(v.len())
        } else {
            v.len()
        };
        let at = rng.random_range(0..span);
        match rng.random_range(0..5) {
            0 => v[at] ^= 1 << rng.random_range(0..8),
            1 => v[at] = [0, 0xff, 0x7f, 0x80][rng.random_range(0..4)],
            2 => v.insert(at, rng.random()),
            3 => {
                let n = rng.random_range(1..=8).min(v.len() - at);
                v.drain(at..at + n);
            }
            _ => {
                let n = rng.random_range(1..=16).min(v.len() - at);
                let run: Vec<u8> = v[at..at + n].to_vec();
                let times = rng.random_range(1..=4);
                for _ in 0..times {
                    v.splice(at..at, run.iter().copied());
                }
            }
        }
    }
    v
}

fn no_panic<T>(what: &str, i: usize, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => panic!("{what}: mutated input #{i} panicked"),
    }
}

fn data_pkl(pth: &Path) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(pth).unwrap()).unwrap();
    let name = z
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with("data.pkl"))
        .unwrap();
    let mut out = Vec::new();
    z.by_name(&name).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn pickle_vm_survives_mutated_state_dicts() {
    let seeds = [
        data_pkl(&fixture("loaders/mae_vit.pth")),
        data_pkl(&fixture("loaders/malicious.pth")),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (mut ok, mut refused) = (0, 0);
    for i in 0..4000 {
        let input = mutate(&mut rng, &seeds[i % 2], 256);
        match no_panic("pickle", i, || pickle::unpickle(&input)) {
            Ok(_) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    assert_under_cap("pickle");
    // The mutations must exercise both outcomes, or the test proves nothing.
    assert!(ok > 50 && refused > 50, "ok {ok}, refused {refused}");
}

#[test]
fn npy_header_parser_survives_mutations() {
    let npz = std::fs::read(fixture("loaders/google_vit.npz")).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(npz)).unwrap();
    let mut seed = Vec::new();
    z.by_index(0).unwrap().read_to_end(&mut seed).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut ok = 0;
    for i in 0..5000 {
        let input = mutate(&mut rng, &seed[..seed.len().min(200)], 128);
        if let Ok(h) = no_panic("npy", i, || npy::parse_header(&input)) {
            assert!(h.data_offset <= input.len());
            ok += 1;
        }
    }
    assert_under_cap("npy");
    assert!(ok > 50 && ok < 5000, "ok {ok}");
}

/// Mutates a checkpoint file `n` times and loads each: an error or a model, never a panic.
fn fuzz_file(rel: &str, name: &str, n: usize, focus: usize, seed: u64) -> (usize, usize) {
    let src = std::fs::read(fixture(rel)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut ok, mut err) = (0, 0);
    for i in 0..n {
        std::fs::write(&path, mutate(&mut rng, &src, focus)).unwrap();
        let opts = LoadOptions {
            heads: Some(4),
            ..Default::default()
        };
        match no_panic(rel, i, || load_model(&path, &opts)) {
            Ok(_) => ok += 1,
            Err(e) => {
                let e = e.to_string();
                assert!(!e.contains('\n'), "{rel} #{i}: multi-line error {e}");
                err += 1;
            }
        }
    }
    assert_under_cap(rel);
    (ok, err)
}

#[test]
fn npz_loader_survives_mutations() {
    let (ok, err) = fuzz_file("loaders/google_vit.npz", "m.npz", 600, 4096, 1);
    assert!(err > 0 && ok + err == 600);
}

#[test]
fn pth_loader_survives_mutations() {
    let (ok, err) = fuzz_file("loaders/mae_vit.pth", "m.pth", 600, 8192, 2);
    assert!(err > 0 && ok + err == 600);
}

#[test]
fn safetensors_loader_survives_mutations() {
    let (ok, err) = fuzz_file(
        "loaders/timm_vit.safetensors",
        "m.safetensors",
        600,
        2048,
        3,
    );
    assert!(err > 0 && ok + err == 600);
}

#[test]
fn config_json_survives_mutations() {
    let src = fixture("loaders/hf_vit");
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("vit");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(
        src.join("model.safetensors"),
        folder.join("model.safetensors"),
    )
    .unwrap();
    let config = std::fs::read(src.join("config.json")).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (mut ok, mut err) = (0, 0);
    for i in 0..1500 {
        std::fs::write(
            folder.join("config.json"),
            mutate(&mut rng, &config, config.len()),
        )
        .unwrap();
        match no_panic("config.json", i, || {
            load_model(&folder, &LoadOptions::default())
        }) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(!e.to_string().contains('\n'));
                err += 1
            }
        }
    }
    assert_under_cap("config.json");
    assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
}

/// The safetensors header check alone, on thousands of mutated headers (length, JSON, dtypes,
/// shapes, offsets): never a panic, and what it accepts candle parses without a panic and with
/// every tensor inside the file.
#[test]
fn safetensors_header_check_survives_mutations() {
    use neuronpath::model::load::safetensors_header::check_bytes;
    let src = std::fs::read(fixture("loaders/timm_vit.safetensors")).unwrap();
    let n = u64::from_le_bytes(src[..8].try_into().unwrap()) as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (mut ok, mut refused) = (0, 0);
    for i in 0..3000 {
        let input = mutate(&mut rng, &src, 8 + n);
        match no_panic("safetensors header", i, || check_bytes(&input)) {
            Ok(()) => {
                ok += 1;
                let loaded = no_panic("candle after the check", i, || {
                    candle_core::safetensors::load_buffer(&input, &candle_core::Device::Cpu)
                });
                if let Ok(t) = loaded {
                    let total: usize = t
                        .values()
                        .map(|t| t.elem_count() * t.dtype().size_in_bytes())
                        .sum();
                    assert!(
                        total <= input.len(),
                        "#{i}: {total} bytes from {}",
                        input.len()
                    );
                }
            }
            Err(e) => {
                assert!(!e.contains('\n'), "#{i}: {e}");
                refused += 1;
            }
        }
    }
    assert_under_cap("safetensors header");
    assert!(ok > 50 && refused > 50, "ok {ok}, refused {refused}");
}
