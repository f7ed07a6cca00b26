#!/usr/bin/env python3
"""The numbers of a scripts/real_dinov2.sh run, as Markdown for the README (standard library only).

    real_dinov2_summary.py OUT

Reads OUT/probe-eval/probe.json, OUT/discover/discover.jsonl, OUT/report.json and
OUT/timings.txt; prints the probe's accuracy, per-method means ± standard deviations over the
images (JAS in both forms, F clean / removed / enhanced) and each claim's verdict with its
statistics.
"""
import json
import statistics
import sys
from pathlib import Path


def mean_sd(v):
    if not v:
        return "-"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):.4g} ± {sd:.2g}"


def main():
    out = Path(sys.argv[1])
    probe = json.loads((out / "probe-eval" / "probe.json").read_text())
    print(
        f"probe: train {100 * probe['train_accuracy']:.2f}% ({probe['train_images']} images), "
        f"test {100 * probe['test_accuracy']:.2f}% ({probe['test_images']} images)\n"
    )
    images = []
    for line in (out / "discover" / "discover.jsonl").read_text().splitlines():
        v = json.loads(line) if line.strip() else {}
        if v.get("kind") == "image" and "methods" in v:
            images.append(v)
    n = len(images)
    right = sum(1 for im in images if im["prediction"] == im.get("label"))
    print(f"images: {n} ({right} classified correctly by the probe)\n")
    methods = sorted({m for im in images for m in im["methods"]})
    print("| method | JAS (reference) | JAS (additive) | F clean | F removed (x0) | F enhanced (x2) |")
    print("|---|---|---|---|---|---|")
    for m in methods:
        rs = [im for im in images if m in im["methods"]]

        def col(f):
            return mean_sd([f(r) for r in rs])

        print(
            f"| {m} | {col(lambda r: r['methods'][m]['jas']['reference'])} "
            f"| {col(lambda r: r['methods'][m]['jas']['additive'])} "
            f"| {col(lambda r: r['prob_target'])} "
            f"| {col(lambda r: r['methods'][m]['prob_removed'])} "
            f"| {col(lambda r: r['methods'][m]['prob_enhanced'])} |"
        )
    print()
    report = out / "report.json"
    if report.is_file():
        r = json.loads(report.read_text())
        for c in r.get("claims", []):
            verdict = c["verdict"].replace("_", " ")
            print(f"- **{c['claim']}**: {verdict}. {c.get('evidence', '')}")
        print()
    t = out / "timings.txt"
    if t.is_file():
        print("timings (seconds since the start of the last run, per step):")
        last = t.read_text().split("---- ")[-1]
        print("    " + last.strip().replace("\n", "\n    "))


if __name__ == "__main__":
    main()
