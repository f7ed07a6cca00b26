"""Shared fixtures: the repository's committed test models (tests/fixtures) and the CLI binary."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
GOLDEN = FIXTURES / "golden"
LOADERS = FIXTURES / "loaders"


def cli_binary() -> Path | None:
    """The `neuronpath` CLI built by `cargo test --release` / `cargo build --release`, if any."""
    env = os.environ.get("NEURONPATH_BIN")
    candidates = [Path(env)] if env else []
    candidates += [ROOT / "target" / "release" / "neuronpath"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    return None


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A small safetensors reader (8-byte header length, JSON header, raw little-endian data), so
    the tests need no `safetensors` package."""
    kinds = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4"}
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=kinds[meta["dtype"]]).reshape(meta["shape"]).copy()
    return out


@pytest.fixture(scope="session")
def golden_x() -> np.ndarray:
    return np.load(GOLDEN / "input_x.npy")


@pytest.fixture(scope="session")
def loader_x() -> np.ndarray:
    return np.load(LOADERS / "input.npy")
