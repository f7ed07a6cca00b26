"""Writes tests/fixtures/cli_*.jsonl with the CLI (never run by CI; rerun after a change of the
record format): `python python/tests/make_expected.py` after `cargo build --release`."""

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_golden  # noqa: E402

out = Path(__file__).resolve().parent / "fixtures"
out.mkdir(exist_ok=True)
for case in sorted(test_golden.CASES):
    path = out / f"cli_{case}.jsonl"
    path.unlink(missing_ok=True)
    test_golden.cli_records(case, path)
    path.with_suffix(".labels.json").unlink()
    # Only the image records: the header holds this machine's paths and the time of the run.
    lines = [line for line in path.read_text().splitlines() if '"kind":"image"' in line]
    path.write_text("".join(line + "\n" for line in lines))
    print(f"{path}: {len(lines)} records")
