"""The embedded model: Python == CLI on its samples, progress, Ctrl-C, the GIL, DataFrames."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import numpy as np
import pytest

import neuronpath
from conftest import ROOT, cli_binary


@pytest.fixture(scope="module")
def model():
    return neuronpath.embedded()


@pytest.fixture(scope="module")
def samples():
    return neuronpath.embedded_samples()


def test_samples_and_preprocess(model, samples):
    images, labels, sources = samples
    assert len(images) == len(labels) == len(sources) == 100
    assert images[0].dtype == np.uint8 and images[0].shape[2] == 3
    x = model.preprocess(images[:3])
    assert x.shape == (3, 3, model.image_size, model.image_size) and x.dtype == np.float32
    # A stack, a single image and a list give the same pixels; uint8 images go to predict as is.
    np.testing.assert_array_equal(model.preprocess(np.stack(images[:3])), x)
    np.testing.assert_array_equal(model.preprocess(images[1])[0], x[1])
    np.testing.assert_array_equal(model.predict(images[:3]), model.predict(x))
    # PIL's convert("RGB") of a grey image repeats the channel.
    grey = images[0][:, :, 0]
    np.testing.assert_array_equal(model.preprocess(grey), model.preprocess(np.stack([grey] * 3, -1)))


def test_discover_equals_cli(model, samples, tmp_path):
    """One image per class, through the CLI and through Python (sources and label names too)."""
    binary = cli_binary()
    if binary is None:
        pytest.skip("no CLI binary (run `cargo build --release` first, or set NEURONPATH_BIN)")
    out = tmp_path / "d.jsonl"
    methods = "path,activation,influence"
    subprocess.run(
        [str(binary), "discover", "--per-class", "1", "--methods", methods, "--steps", "8",
         "-o", str(out), "--no-report"],
        check=True, capture_output=True, cwd=ROOT,
    )
    theirs = [json.loads(l) for l in out.read_text().splitlines()][1:]
    images, labels, sources = samples
    pick = [r["index"] for r in theirs]
    ours = model.discover(
        [images[i] for i in pick], [labels[i] for i in pick], methods=methods.split(","), steps=8,
        sources=[sources[i] for i in pick], progress=False,
    )
    for o, t in zip(ours, theirs):
        o["index"] = t["index"]  # the CLI numbers images over all 100 samples
        t = {k: v for k, v in t.items() if k in o}
        assert o == t


def test_progress_callback(model, samples):
    images, labels, _ = samples
    calls = []
    model.discover(images[:5], labels[:5], methods="activation", steps=2, batch=2,
                   progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_progress_on_stderr(model, samples, capsys):
    images, labels, _ = samples
    model.discover(images[:2], labels[:2], methods="activation", steps=2, progress=True)
    err = capsys.readouterr().err
    assert "discover: 2/2 images" in err and "ETA" in err


def test_ctrl_c_interrupts(model, samples):
    """SIGINT during a long discover raises KeyboardInterrupt instead of running to the end."""
    images, labels, _ = samples
    done = []
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.discover(images, labels, batch=1, progress=lambda d, t: done.append(d))
    finally:
        timer.cancel()
    assert len(done) < len(images)


def test_gil_is_released(model, samples):
    """Another Python thread runs while discover computes: between two progress calls (each
    batch is a long native computation) the counter thread advances."""
    images, labels, _ = samples
    counter = [0]
    stop = threading.Event()

    def count():
        while not stop.is_set():
            counter[0] += 1

    seen = []
    t = threading.Thread(target=count)
    t.start()
    try:
        model.discover(images[:6], labels[:6], methods="path", steps=10, batch=2,
                       progress=lambda d, n: seen.append(counter[0]))
    finally:
        stop.set()
        t.join()
    assert len(seen) == 3
    assert seen[-1] > seen[0], "the counter thread never ran during the computation"


def test_to_dataframe(model, samples):
    pd = pytest.importorskip("pandas")
    images, labels, _ = samples
    recs = model.discover(images[:3], labels[:3], methods=["path", "random"], steps=4, progress=False)
    df = neuronpath.to_dataframe(recs)
    assert isinstance(df, pd.DataFrame)
    assert len(df) == 6
    assert set(df["method"]) == {"path", "random"}
    row = df[(df["index"] == 1) & (df["method"] == "path")].iloc[0]
    assert row["path"] == recs[1]["methods"]["path"]["path"]
    assert row["jas"] == recs[1]["methods"]["path"]["jas"]["reference"]
    assert row["label_name"] == recs[1]["label_name"]
    # Lines of a discover JSON Lines file work too (the header is skipped).
    assert len(neuronpath.to_dataframe([{"kind": "header"}] + recs)) == 6


def test_info(model):
    info = model.info
    assert info["model"] == "embedded:fashion-mnist-vit"
    assert info["layout"] == "hugging_face"
    assert info["config"]["layers"] == model.layers == len(info["neuron_modules"])
    assert info["class_names"][0] == "T-shirt/top"
    assert "Model(" in repr(model)


def test_records_name_neurons_by_module(model, samples):
    images, labels, _ = samples
    recs = model.discover(images[:2], labels[:2], methods=["path", "random"], steps=4, progress=False)
    modules = model.info["neuron_modules"]
    assert modules[3] == "vit.encoder.layer.3.intermediate" == model.neuron_module(3)
    for r in recs:
        for m in r["methods"].values():
            assert m["neurons"] == [{"module": mod, "unit": u} for mod, u in zip(modules, m["path"])]
