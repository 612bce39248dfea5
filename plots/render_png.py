#!/usr/bin/env python
"""Render every DVC plot of the current repo to PNG, offline.

    python plots/render_png.py OUT_DIR [extra `dvc plots show` args, e.g. targets]

Runs `dvc plots show --json` (specs come back with their data inlined) and
writes OUT_DIR/<plot id>.png for each Vega-Lite plot with
vl_convert.vegalite_to_png (PyPI: vl-convert-python, which bundles Vega,
Vega-Lite and a JS engine, so nothing is fetched from the network).
Image plots (type "image") are skipped: they are PNGs already.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

# vl-convert ships several Vega-Lite versions; DVC's templates target v5.
VL_VERSION = os.environ.get("VL_VERSION", "5.21")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    try:
        import vl_convert as vlc
    except ImportError:
        sys.exit("vl_convert missing: pip install vl-convert-python")

    out_dir = Path(argv[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "--json", *argv[1:]],
        capture_output=True, text=True, env=env, check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"dvc plots show --json failed:\n{proc.stderr}")
    shown = json.loads(proc.stdout)
    for rev, err in (shown.get("errors") or {}).items():
        print(f"warning: {rev}: {err}", file=sys.stderr)

    written = 0
    for plot_id, entries in shown.get("data", {}).items():
        vega = [e for e in entries if e.get("type") == "vega"]
        for i, entry in enumerate(vega):
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", plot_id).strip("_") or "plot"
            if len(vega) > 1:
                name += f"_{i}"
            png = vlc.vegalite_to_png(entry["content"], vl_version=VL_VERSION, scale=2)
            (out_dir / f"{name}.png").write_bytes(png)
            print(out_dir / f"{name}.png")
            written += 1
    if not written:
        print("no Vega-Lite plots found", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
