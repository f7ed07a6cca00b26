"""Writes tests/fixtures/fashion-mnist: the first 512 training and 256 test images of the Debian
package `dataset-fashion-mnist` as IDX files (gz), so the training and reader tests need nothing
but the repository. Never run by CI; the committed files are its output."""
import gzip, struct, sys
from pathlib import Path

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
OUT = Path(__file__).resolve().parent.parent / "tests/fixtures/fashion-mnist"
OUT.mkdir(parents=True, exist_ok=True)
for prefix, n in [("train", 512), ("t10k", 256)]:
    images = gzip.open(SRC / f"{prefix}-images-idx3-ubyte.gz").read()
    labels = gzip.open(SRC / f"{prefix}-labels-idx1-ubyte.gz").read()
    magic, _, rows, cols = struct.unpack(">IIII", images[:16])
    assert magic == 2051 and (rows, cols) == (28, 28)
    head = struct.pack(">IIII", 2051, n, rows, cols) + images[16 : 16 + n * rows * cols]
    assert struct.unpack(">I", labels[:4])[0] == 2049
    lab = struct.pack(">II", 2049, n) + labels[8 : 8 + n]
    for name, data in [(f"{prefix}-images-idx3-ubyte.gz", head), (f"{prefix}-labels-idx1-ubyte.gz", lab)]:
        with open(OUT / name, "wb") as f:
            f.write(gzip.compress(data, compresslevel=9, mtime=0))
print(sorted(p.name for p in OUT.iterdir()))
