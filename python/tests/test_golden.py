"""The Python API computes what the CLI computes (same library, f64, 1e-12) and what the authors'
code computes (golden values, 1e-9), on the committed golden models."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

import neuronpath
from conftest import GOLDEN, ROOT, cli_binary

HERE = Path(__file__).resolve().parent
ALL_METHODS = ["path", "activation", "influence", "ig", "random"]

# (name, checkpoint, load options, discover options, CLI flags)
CASES = {
    "vit": (
        "tiny_vit.npz",
        {},
        {"compat": False},
        [],
    ),
    "vit_top3": (
        "tiny_vit.npz",
        {},
        {"compat": False, "top_k": 3},
        ["--top-k", "3"],
    ),
    "mae_compat": (
        "tiny_mae_state_dict.npz",
        {"heads": 4},
        {"compat": True},
        ["--heads", "4", "--compat"],
    ),
}


def assert_same(a, b, where="record", tol=1e-12):
    """Equal structure, equal ints and strings, floats within `tol` (None stands for NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}", tol)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: {a} vs {b}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]", tol)
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, f"{where}: {a} vs {b}"
        assert math.isclose(a, b, rel_tol=0, abs_tol=tol), f"{where}: {a} vs {b} (|d| = {abs(a - b):.3g})"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def python_records(case, golden_x):
    ckpt, load_opts, opts, _ = CASES[case]
    model = neuronpath.load(GOLDEN / ckpt, dtype="f64", **load_opts)
    return model.discover(golden_x, [3, 3], methods=ALL_METHODS, steps=20, progress=False, **opts)


def cli_records(case, out: Path):
    ckpt, _, _, flags = CASES[case]
    binary = cli_binary()
    if binary is None:
        pytest.skip("no CLI binary (run `cargo build --release` first, or set NEURONPATH_BIN)")
    labels = out.with_suffix(".labels.json")
    labels.write_text("[3, 3]")
    cmd = [
        str(binary), "discover", "--model", str(GOLDEN / ckpt), str(GOLDEN / "input_x.npy"),
        "--labels", str(labels), "--dtype", "f64", "--steps", "20",
        "--methods", ",".join(ALL_METHODS), "-o", str(out), "--no-report", *flags,
    ]
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return [r for r in lines if r["kind"] == "image"]


def without_source(records):
    """The records without where their input came from: the CLI's `source` and `image` (the
    file's path and content hash) describe a file read, which in-memory arrays do not have."""
    return [{k: v for k, v in r.items() if k not in ("source", "image")} for r in records]


@pytest.mark.parametrize("case", sorted(CASES))
def test_python_equals_cli(case, golden_x, tmp_path):
    ours = python_records(case, golden_x)
    theirs = cli_records(case, tmp_path / f"{case}.jsonl")
    assert_same(without_source(ours), without_source(theirs))


@pytest.mark.parametrize("case", sorted(CASES))
def test_python_equals_committed_cli_output(case, golden_x):
    """The same comparison against records the CLI wrote when this test was made
    (python/tests/fixtures/cli_*.jsonl, made by make_expected.py), for machines without the CLI."""
    path = HERE / "fixtures" / f"cli_{case}.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    theirs = [r for r in lines if r["kind"] == "image"]
    ours = python_records(case, golden_x)
    # Fields added to records after the file was made are not compared.
    ours = [{k: v for k, v in r.items() if k in t} for r, t in zip(ours, theirs)]
    assert_same(without_source(ours), without_source(theirs))


def layer_major(paths):
    return [list(p) for p in zip(*paths)]


def test_matches_authors_code_vit(golden_x):
    g = json.loads((GOLDEN / "expected_vit.json").read_text())["vit_f64"]
    recs = python_records("vit", golden_x)
    path = [r["methods"]["path"] for r in recs]
    assert [p["path"] for p in path] == layer_major(g["path"])
    assert [r["methods"]["activation"]["path"] for r in recs] == layer_major(g["base_path"])
    for i, r in enumerate(recs):
        assert math.isclose(path[i]["jas"]["reference"], g["jas_path"][i], abs_tol=1e-9)
        assert math.isclose(r["methods"]["activation"]["jas"]["reference"], g["jas_base_path"][i], abs_tol=1e-9)
        assert math.isclose(path[i]["prob_removed"], g["prob_gt_remove_path"][i], abs_tol=1e-9)
        assert math.isclose(path[i]["prob_enhanced"], g["prob_gt_enhance_path"][i], abs_tol=1e-9)
        assert math.isclose(r["prob_target"], g["prob_gt_clean"][i], abs_tol=1e-9)
    model = neuronpath.load(GOLDEN / "tiny_vit.npz", dtype="f64")
    np.testing.assert_allclose(model.predict(golden_x), np.array(g["clean_probs"]), rtol=0, atol=1e-12)


def test_matches_authors_code_mae(golden_x):
    g = json.loads((GOLDEN / "expected_mae.json").read_text())
    recs = python_records("mae_compat", golden_x)
    assert [r["methods"]["path"]["path"] for r in recs] == layer_major(g["path"])
    assert [r["methods"]["activation"]["path"] for r in recs] == layer_major(g["base_path"])
    for i, r in enumerate(recs):
        assert math.isclose(r["methods"]["path"]["jas"]["reference"], g["jas_path_div196"][i], abs_tol=1e-9)
        assert math.isclose(r["methods"]["path"]["prob_removed"], g["prob_gt_remove_path"][i], abs_tol=1e-9)


def test_jas_and_manipulate_agree_with_discover(golden_x):
    model = neuronpath.load(GOLDEN / "tiny_vit.npz", dtype="f64")
    recs = model.discover(golden_x, [3, 3], methods=["path", "random"], progress=False)
    for method in ("path", "random"):
        paths = [r["methods"][method]["path"] for r in recs]
        jas = model.jas(golden_x, paths, [3, 3])
        for r, j in zip(recs, jas):
            assert_same(j, r["methods"][method]["jas"], f"{method} jas")
        m = model.manipulate(golden_x, paths, [3, 3], factors=[0.0, 2.0])
        assert m["prob"].shape == (2, 2) and m["probs"].shape == (2, 2, 10)
        for i, r in enumerate(recs):
            assert math.isclose(m["prob"][i, 0], r["methods"][method]["prob_removed"], abs_tol=1e-12)
            assert math.isclose(m["prob"][i, 1], r["methods"][method]["prob_enhanced"], abs_tol=1e-12)
            assert math.isclose(m["clean"][i], r["prob_target"], abs_tol=1e-12)
        np.testing.assert_allclose(m["probs"].sum(-1), 1.0, atol=1e-12)


def test_layout_of_arrays_does_not_matter(golden_x):
    """float32 / float64, C / Fortran order, strided views: the same numbers."""
    model = neuronpath.load(GOLDEN / "tiny_vit.npz", dtype="f64")
    ref = model.predict(golden_x)
    x64 = golden_x.astype(np.float64)
    np.testing.assert_array_equal(model.predict(np.asfortranarray(x64)), model.predict(x64))
    np.testing.assert_array_equal(model.predict(np.asfortranarray(golden_x)), ref)
    doubled = np.repeat(golden_x, 2, axis=0)[::2]  # a non-contiguous view of the same images
    assert not doubled.flags.c_contiguous
    np.testing.assert_array_equal(model.predict(doubled), ref)
    flipped = np.ascontiguousarray(golden_x[:, :, ::-1])[:, :, ::-1]  # strides < 0
    np.testing.assert_array_equal(model.predict(flipped), ref)


def test_explain_maps_the_right_image_path_and_target(golden_x):
    """Patch maps of each record's path: each neuron map's value is the neuron's clean CLS
    activation (authors' golden values), the path map's value is the record's clean F, and the
    maps add up to value - baseline - delta (completeness of the Riemann sum)."""
    g = json.loads((GOLDEN / "expected_vit.json").read_text())["vit_f64"]
    acts = np.array(g["clean_cls_ffn_activations"])  # (layer, image, unit)
    model = neuronpath.load(GOLDEN / "tiny_vit.npz", dtype="f64")
    recs = model.discover(golden_x, [3, 3], methods="path", progress=False)
    paths = [r["methods"]["path"]["path"] for r in recs]
    out = model.explain(golden_x, paths, [3, 3], steps=16)
    assert len(out) == 2
    for i, (r, e) in enumerate(zip(recs, out)):
        assert e["grid"] == 2 and e["maps"].shape == (model.layers + 1, 2, 2)
        for l, n in enumerate(e["neurons"]):
            assert (n["layer"], n["unit"]) == (l, paths[i][l])
            assert math.isclose(n["value"], acts[l, i, paths[i][l]], abs_tol=1e-9)
            np.testing.assert_array_equal(e["maps"][l].ravel(), n["patches"])
        assert math.isclose(e["path"]["value"], r["prob_target"], abs_tol=1e-12)
        for m in e["neurons"] + [e["path"]]:
            assert math.isclose(sum(m["patches"]) + m["baseline"] + m["delta"], m["value"], abs_tol=1e-12)
    with pytest.raises(ValueError, match="one neuron per layer"):
        model.explain(golden_x, [[[0, 1]] * 4] * 2)
