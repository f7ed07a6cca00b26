//! PyTorch checkpoints go through neuronpath's own bounded pickle interpreter: crafted files that
//! Python's unpickler would execute (or that exhaust memory or the stack) are refused with a
//! one-line error, and real state dicts (MAE `.pth`, Hugging Face `pytorch_model.bin`, strided
//! views) load exactly. Every crafted file is made here.
mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use neuronpath::model::{load_model, LoadOptions, Mode};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes a PyTorch zip checkpoint: `data.pkl`, `byteorder` and the given storages.
fn torch_zip(path: &Path, pkl: &[u8], storages: &[(&str, Vec<u8>)]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", opts).unwrap();
    z.write_all(pkl).unwrap();
    z.start_file("archive/byteorder", opts).unwrap();
    z.write_all(b"little").unwrap();
    for (key, bytes) in storages {
        z.start_file(format!("archive/data/{key}"), opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

/// A protocol-2 pickle writer for the few shapes a state dict takes.
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Pickle {
        Pickle(b"\x80\x02".to_vec())
    }
    fn op(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend((s.len() as u32).to_le_bytes());
        self.op(s.as_bytes())
    }
    fn int(&mut self, v: i64) -> &mut Self {
        self.0.push(b'J');
        self.op(&(v as i32).to_le_bytes())
    }
    fn ints(&mut self, v: &[usize]) -> &mut Self {
        self.op(b"(");
        for &x in v {
            self.int(x as i64);
        }
        self.op(b"t")
    }
    /// `OrderedDict()` on the stack.
    fn ordered_dict(&mut self) -> &mut Self {
        self.global("collections", "OrderedDict").op(b")R")
    }
    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`.
    fn tensor(
        &mut self,
        storage: &str,
        key: &str,
        numel: usize,
        offset: usize,
        size: &[usize],
        stride: &[usize],
    ) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b"((");
        self.str("storage")
            .global("torch", storage)
            .str(key)
            .str("cpu");
        self.int(numel as i64).op(b"tQ").int(offset as i64);
        self.ints(size).ints(stride).op(b"\x89");
        self.ordered_dict().op(b"tR")
    }
    fn stop(&mut self) -> Vec<u8> {
        self.op(b".").0.clone()
    }
}

fn row_major(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn le_bytes(t: &Tensor) -> Vec<u8> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// A state dict pickle (`OrderedDict` of tensors) and its storages. 2-D tensors whose name is in
/// `transposed` are stored as the transpose and read through a strided view.
fn state_dict_pth(
    tensors: &BTreeMap<String, Tensor>,
    transposed: &[&str],
) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let mut p = Pickle::new();
    p.ordered_dict().op(b"(");
    let mut storages = Vec::new();
    for (i, (name, t)) in tensors.iter().enumerate() {
        let key = i.to_string();
        let shape = t.dims().to_vec();
        p.str(name);
        if transposed.contains(&name.as_str()) {
            let (r, c) = t.dims2().unwrap();
            storages.push((key.clone(), le_bytes(&t.t().unwrap().contiguous().unwrap())));
            p.tensor("FloatStorage", &key, r * c, 0, &shape, &[1, r]);
        } else {
            storages.push((key.clone(), le_bytes(t)));
            p.tensor(
                "FloatStorage",
                &key,
                t.elem_count(),
                0,
                &shape,
                &row_major(&shape),
            );
        }
    }
    p.op(b"u");
    (p.stop(), storages)
}

fn write_pth(path: &Path, pkl: &[u8], storages: &[(String, Vec<u8>)]) {
    let s: Vec<(&str, Vec<u8>)> = storages
        .iter()
        .map(|(k, b)| (k.as_str(), b.clone()))
        .collect();
    torch_zip(path, pkl, &s);
}

fn err(path: &Path) -> String {
    match load_model(path, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => {
            let e = e.to_string();
            assert!(!e.contains('\n'), "one line: {e}");
            assert!(
                e.contains(&path.display().to_string()),
                "names the file: {e}"
            );
            e
        }
    }
}

/// A legitimate one-tensor state dict as the first part of a pickle, then `tail` before STOP.
fn with_tail(tail: &[u8]) -> Vec<u8> {
    let mut p = Pickle::new();
    p.op(b"}(").str("model").op(b"}(").str("head.bias");
    p.tensor("FloatStorage", "0", 2, 0, &[2], &[1]).op(b"u");
    p.op(b"u").op(tail);
    p.stop()
}

fn unsafe_file(dir: &Path, name: &str, pkl: &[u8]) -> PathBuf {
    let path = dir.join(name);
    torch_zip(&path, pkl, &[("0", vec![0; 8])]);
    path
}

#[test]
fn dangerous_global_inside_ordered_dict_arguments_is_refused() {
    // OrderedDict([("k", os.system("echo pwned"))]) as the state dict.
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pickle::new();
    p.global("collections", "OrderedDict").op(b"(((").str("k");
    p.global("os", "system")
        .op(b"(")
        .str("echo pwned")
        .op(b"tRtltR");
    let e = err(&unsafe_file(dir.path(), "od.pth", &p.stop()));
    assert!(
        e.contains("refusing unsafe pickle") && e.contains("`os.system`"),
        "{e}"
    );
}

#[test]
fn dangerous_call_left_lower_on_the_stack_is_refused() {
    // posix.system("echo pwned") is REDUCEd first, then the real state dict is built above it
    // and returned: the returned object is clean, the stream is not.
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pickle::new();
    p.global("posix", "system")
        .op(b"(")
        .str("echo pwned")
        .op(b"tR");
    p.op(b"}(").str("model").op(b"}(").str("head.bias");
    p.tensor("FloatStorage", "0", 2, 0, &[2], &[1]).op(b"uu");
    let e = err(&unsafe_file(dir.path(), "lower.pth", &p.stop()));
    assert!(e.contains("`posix.system`"), "{e}");
    // The same with the call's result popped off before STOP.
    let e = err(&unsafe_file(
        dir.path(),
        "popped.pth",
        &with_tail(b"cos\nsystem\n(X\x04\x00\x00\x00truetR0"),
    ));
    assert!(e.contains("`os.system`"), "{e}");
}

#[test]
fn defaultdict_factory_is_refused() {
    // collections.defaultdict(os.system): Python calls the factory on a missing key.
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pickle::new();
    p.op(b"}(").str("model");
    p.global("collections", "defaultdict");
    p.global("os", "system").op(b"\x85R");
    p.op(b"u");
    let e = err(&unsafe_file(dir.path(), "dd.pth", &p.stop()));
    assert!(e.contains("`collections.defaultdict`"), "{e}");
    // Named with STACK_GLOBAL instead of GLOBAL.
    let mut p = Pickle::new();
    p.str("builtins").str("exec").op(b"\x93");
    let e = err(&unsafe_file(dir.path(), "sg.pth", &p.stop()));
    assert!(e.contains("`builtins.exec`"), "{e}");
}

#[test]
fn existing_malicious_fixture_is_refused() {
    let e = err(&fixture("loaders/malicious.pth"));
    assert!(e.contains("`posix.system`"), "{e}");
}

#[test]
fn memo_doubling_bomb_is_an_error() {
    // x = "AAAA...", then 64 times x = (x, x) through the memo: a few hundred bytes, 2^64 items.
    let dir = tempfile::tempdir().unwrap();
    let mut tail = b"X\x00\x01\x00\x00".to_vec();
    tail.extend([b'A'; 256]);
    tail.extend(b"q\x00");
    for _ in 0..64 {
        tail.extend(b"h\x00h\x00\x86q\x00");
    }
    tail.push(b'0');
    let e = err(&unsafe_file(dir.path(), "memo.pth", &with_tail(&tail)));
    assert!(
        e.contains("unreadable pickle") && e.contains("items"),
        "{e}"
    );
}

#[test]
fn deep_nesting_is_an_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let mut tail = vec![b'('; 100_000];
    tail.extend(vec![b'l'; 100_000]);
    tail.push(b'0');
    let e = err(&unsafe_file(dir.path(), "deep.pth", &with_tail(&tail)));
    assert!(e.contains("nested more than"), "{e}");
}

#[test]
fn unknown_opcode_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = err(&unsafe_file(dir.path(), "op.pth", &with_tail(b"\xfe")));
    assert!(e.contains("unknown pickle opcode 0xfe"), "{e}");
}

#[test]
fn tensor_view_beyond_its_storage_or_budget_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A (2, 3) view of a 4-element storage.
    let mut p = Pickle::new();
    p.op(b"}(").str("w");
    p.tensor("FloatStorage", "0", 4, 0, &[2, 3], &[3, 1])
        .op(b"u");
    let path = dir.path().join("oob.pth");
    torch_zip(&path, &p.stop(), &[("0", vec![0; 16])]);
    assert!(err(&path).contains("reaches element 5 of a storage of 4"));
    // A stride-0 view of one element claiming 2^31 elements (8 GiB from a tiny file).
    let mut p = Pickle::new();
    p.op(b"}(").str("w");
    p.tensor("FloatStorage", "0", 1, 0, &[1 << 30, 2], &[0, 0])
        .op(b"u");
    let path = dir.path().join("expand.pth");
    torch_zip(&path, &p.stop(), &[("0", vec![0; 4])]);
    let e = err(&path);
    assert!(e.contains("over the decoding cap"), "{e}");
    // A storage member whose size disagrees with the pickle.
    let mut p = Pickle::new();
    p.op(b"}(").str("w");
    p.tensor("FloatStorage", "0", 4, 0, &[4], &[1]).op(b"u");
    let path = dir.path().join("short.pth");
    torch_zip(&path, &p.stop(), &[("0", vec![0; 12])]);
    let e = err(&path);
    assert!(e.contains("declares 12 bytes") && e.contains("16"), "{e}");
}

fn hf_tensors() -> BTreeMap<String, Tensor> {
    candle_core::safetensors::load(fixture("loaders/hf_vit/model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .collect()
}

fn logits(path: &Path) -> Vec<Vec<f64>> {
    let o = LoadOptions {
        dtype: DType::F64,
        ..Default::default()
    };
    let model = load_model(path, &o).unwrap().model;
    let x = npy("loaders/input.npy");
    to_vec2(&model.forward(&x, &[], None, Mode::Frozen).unwrap().logits)
}

#[test]
fn hugging_face_pytorch_model_bin_equals_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("vit-bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy(
        fixture("loaders/hf_vit/config.json"),
        bin.join("config.json"),
    )
    .unwrap();
    let tensors = hf_tensors();
    let transposed = [
        "vit.encoder.layer.0.intermediate.dense.weight",
        "vit.encoder.layer.1.attention.attention.query.weight",
    ];
    assert!(transposed.iter().all(|n| tensors.contains_key(*n)));
    let (pkl, storages) = state_dict_pth(&tensors, &transposed);
    write_pth(&bin.join("pytorch_model.bin"), &pkl, &storages);
    let want = logits(&fixture("loaders/hf_vit"));
    let got = logits(&bin);
    assert_eq!(got, want, "pytorch_model.bin must load bit-identically");

    // Sharded: an index naming two .bin shards.
    let sharded = dir.path().join("vit-sharded");
    std::fs::create_dir(&sharded).unwrap();
    std::fs::copy(bin.join("config.json"), sharded.join("config.json")).unwrap();
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    for (i, (k, v)) in tensors.into_iter().enumerate() {
        if i % 2 == 0 {
            a.insert(k, v);
        } else {
            b.insert(k, v);
        }
    }
    let mut map = serde_json::Map::new();
    for (file, part) in [
        ("pytorch_model-00001-of-00002.bin", &a),
        ("pytorch_model-00002-of-00002.bin", &b),
    ] {
        let (pkl, storages) = state_dict_pth(part, &[]);
        write_pth(&sharded.join(file), &pkl, &storages);
        for k in part.keys() {
            map.insert(k.clone(), file.into());
        }
    }
    std::fs::write(
        sharded.join("pytorch_model.bin.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
    assert_eq!(logits(&sharded), want);

    // An index that points outside the folder is refused.
    let mut bad = map.clone();
    bad.insert(
        "vit.embeddings.cls_token".into(),
        "../vit-bin/pytorch_model.bin".into(),
    );
    std::fs::write(
        sharded.join("pytorch_model.bin.index.json"),
        serde_json::json!({ "weight_map": bad }).to_string(),
    )
    .unwrap();
    let e = err(&sharded);
    assert!(e.contains("not a file name in this folder"), "{e}");
}

#[test]
fn mae_checkpoint_still_loads_through_the_new_interpreter() {
    // Same logits as before the interpreter change (golden values from timm).
    let want = vec2(&json("loaders/expected.json")["mae_vit"]["logits"]);
    let o = LoadOptions {
        dtype: DType::F64,
        heads: Some(4),
        ..Default::default()
    };
    let model = load_model(&fixture("loaders/mae_vit.pth"), &o)
        .unwrap()
        .model;
    let got = to_vec2(
        &model
            .forward(&npy("loaders/input.npy"), &[], None, Mode::Frozen)
            .unwrap()
            .logits,
    );
    for (g, w) in got.iter().zip(&want) {
        assert_close(g, w, 1e-10, "mae");
    }
}
