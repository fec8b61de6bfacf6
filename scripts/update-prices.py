#!/usr/bin/env python3
"""Regenerates crates/pricing/data/prices.csv, Polymeter's price table, from
the `model_prices_and_context_window` JSON that ships inside the `litellm`
package on PyPI (MIT License, https://github.com/BerriAI/litellm).

usage: scripts/update-prices.py [LITELLM_VERSION]   (default: the newest release)

Needs only Python 3 and pip (the wheel is downloaded, never installed).
"""
import csv
import datetime
import glob
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "pricing", "data", "prices.csv")
MEMBER = "litellm/model_prices_and_context_window_backup.json"


def number(entry, key):
    v = entry.get(key)
    return v if isinstance(v, (int, float)) and v >= 0 else None


def main():
    spec = f"litellm=={sys.argv[1]}" if len(sys.argv) > 1 else "litellm"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", tmp, spec],
            check=True,
        )
        wheel = glob.glob(os.path.join(tmp, "litellm-*.whl"))[0]
        version = os.path.basename(wheel).split("-")[1]
        with zipfile.ZipFile(wheel) as z:
            prices = json.loads(z.read(MEMBER))
            metadata = z.read(f"litellm-{version}.dist-info/METADATA").decode()
    license_line = next((l for l in metadata.splitlines() if l.startswith("License-Expression:") or l.startswith("License:")), "")
    if "MIT" not in license_line:
        sys.exit(f"litellm {version} is no longer MIT-licensed ({license_line!r}); review before using its data")
    rows = []
    for model, entry in prices.items():
        if model == "sample_spec" or not isinstance(entry, dict):
            continue
        inp, out = number(entry, "input_cost_per_token"), number(entry, "output_cost_per_token")
        if inp is None and out is None:
            continue
        read = number(entry, "cache_read_input_token_cost")
        write = number(entry, "cache_creation_input_token_cost")
        cell = lambda v: "" if v is None else repr(float(v))
        rows.append([model, cell(inp or 0.0), cell(out or 0.0), cell(read), cell(write)])
    rows.sort()
    buf = io.StringIO()
    buf.write(f"# Polymeter price table: USD per token. Generated {datetime.date.today()} by scripts/update-prices.py\n")
    buf.write(f"# from {MEMBER} in litellm {version} on PyPI ({license_line.split(':', 1)[1].strip()} License,\n")
    buf.write("# Copyright (c) 2023 Berri AI, https://github.com/BerriAI/litellm). An empty cache price means the input price.\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "input", "output", "cache_read", "cache_write"])
    w.writerows(rows)
    with open(OUT, "w") as f:
        f.write(buf.getvalue())
    print(f"{len(rows)} models from litellm {version} → {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
