#!/usr/bin/env python3
"""Prints the median of every criterion benchmark under target/criterion (after `cargo bench`)."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
rows = []
for estimates in sorted(root.glob("**/new/estimates.json")):
    name = str(estimates.parent.parent.relative_to(root))
    median = json.loads(estimates.read_text())["median"]["point_estimate"]
    rows.append((name, median))
if not rows:
    sys.exit(f"no criterion results under {root}: run `cargo bench` first")
width = max(len(name) for name, _ in rows)
for name, ns in rows:
    shown = f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.1f} ns"
    print(f"{name:<{width}}  {shown:>10}")
