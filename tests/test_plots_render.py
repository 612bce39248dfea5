"""`dvc plots show` with plots/offline_template.html renders with no network.

Builds a throwaway DVC project with the plot kinds this repo uses (DVCLive
loss curves, confusion matrix, ROC of two models, bar chart of metrics),
renders it with the offline template and checks that the page loads no
remote scripts. When Chromium is installed (Debian package `chromium`),
the page is also screenshotted headless, with networking disabled, and the
PNG must contain drawn (coloured) pixels.
"""

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "plots" / "offline_template.html"

DVC_YAML = """\
plots:
  - dvclive/plots/metrics/train/loss.tsv:
      x: step
      y: loss
      title: train loss
  - loss_train_vs_eval:
      x: step
      y:
        dvclive/plots/metrics/train/loss.tsv: loss
        dvclive/plots/metrics/eval/loss.tsv: loss
  - eval/lora/confusion.json:
      template: confusion
      x: actual
      y: predicted
  - roc:
      template: simple
      x: fpr
      y:
        eval/base/roc.json: tpr
        eval/lora/roc.json: tpr
  - model_comparison:
      template: bar_horizontal
      x: value
      y:
        eval/base/metrics.csv: metric
        eval/lora/metrics.csv: metric
"""
N_PLOTS = 5

REMOTE_SCRIPT = re.compile(
    r"<script\b[^>]*\bsrc\s*=\s*[\"']?\s*(?:https?:)?//", re.IGNORECASE
)


def _write_project_files(root: Path) -> None:
    for split, offset in (("train", 0.0), ("eval", 0.15)):
        path = root / "dvclive" / "plots" / "metrics" / split / "loss.tsv"
        path.parent.mkdir(parents=True)
        rows = [f"{s}\t{2.0 / (1 + s / 4) + offset:.4f}" for s in range(20)]
        path.write_text("step\tloss\n" + "\n".join(rows) + "\n")

    labels = ["cat", "dog", "bird"]
    pairs = [
        {"actual": a, "predicted": labels[(i + j) % 3] if j % 4 == 0 else a}
        for i, a in enumerate(labels)
        for j in range(12)
    ]
    for model, k in (("base", 1.5), ("lora", 4.0)):
        d = root / "eval" / model
        d.mkdir(parents=True)
        roc = [{"fpr": x / 10, "tpr": round(1 - (1 - x / 10) ** k, 4)} for x in range(11)]
        (d / "roc.json").write_text(json.dumps({"roc": roc}))
        scores = (0.71, 0.66, 0.78) if model == "base" else (0.86, 0.84, 0.91)
        (d / "metrics.csv").write_text(
            "metric,value\n"
            + "".join(f"{m},{v}\n" for m, v in zip(("accuracy", "f1", "auc"), scores))
        )
    (root / "eval" / "lora" / "confusion.json").write_text(
        json.dumps({"confusion": pairs})
    )
    (root / "dvc.yaml").write_text(DVC_YAML)


def _dvc(root: Path, *args: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _read_png_rgb(path: Path):
    """Minimal PNG decoder (8-bit RGB/RGBA, non-interlaced). Returns (w, h, rows)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = channels = None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if ctype == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and color in (2, 6), (depth, color, interlace)
            channels = 3 if color == 2 else 4
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if ftype == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif ftype == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = prev[i]
                c = prev[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(line)
        prev = line
    return width, height, channels, rows


def _pixel_stats(path: Path):
    """(non-white fraction, coloured fraction) of the screenshot."""
    width, height, channels, rows = _read_png_rgb(path)
    non_white = coloured = 0
    for line in rows:
        for i in range(0, len(line), channels):
            r, g, b = line[i], line[i + 1], line[i + 2]
            if r < 235 or g < 235 or b < 235:
                non_white += 1
                if max(r, g, b) - min(r, g, b) > 60:  # plot colours, not grey text
                    coloured += 1
    total = width * height
    return non_white / total, coloured / total


def _chromium():
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    assert TEMPLATE.is_file(), f"missing {TEMPLATE}; run plots/build_template.sh"
    root = tmp_path_factory.mktemp("plots_project")
    _write_project_files(root)
    _dvc(root, "init", "--no-scm", "-q")
    _dvc(root, "plots", "show", "--html-template", str(TEMPLATE), "-o", "out")
    return root, root / "out" / "index.html"


def test_html_has_no_remote_scripts(rendered):
    _, html_path = rendered
    html = html_path.read_text(encoding="utf8")
    assert not REMOTE_SCRIPT.search(html), "page loads a script from the network"
    assert "cdn.jsdelivr.net" not in html
    assert "{plot_divs}" not in html and "{scripts}" not in html
    # vega, vega-lite, vega-embed are inlined, one vegaEmbed call per plot
    for lib in ("vega@", "vega-lite@", "vega-embed@"):
        assert f"/*! {lib}" in html, f"{lib} not inlined"
    assert html.count("vegaEmbed('#") == N_PLOTS


def test_config_html_template_relative_to_dvc_dir(rendered):
    # plots.html_template in .dvc/config is resolved relative to .dvc/
    root, _ = rendered
    rel = os.path.relpath(TEMPLATE, root / ".dvc")
    _dvc(root, "config", "--local", "plots.html_template", rel)
    _dvc(root, "plots", "show", "-o", "out_cfg")
    html = (root / "out_cfg" / "index.html").read_text(encoding="utf8")
    assert not REMOTE_SCRIPT.search(html)
    assert html.count("vegaEmbed('#") == N_PLOTS


def test_page_renders_offline_in_chromium(rendered, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    _, html_path = rendered
    png = tmp_path / "shot.png"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # any network request fails: the page must not need one
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={png}",
        "--window-size=1400,1400",
        "--force-device-scale-factor=0.5",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
        html_path.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert png.is_file(), f"no screenshot:\n{proc.stdout}\n{proc.stderr}"
    non_white, coloured = _pixel_stats(png)
    # Blank page: 0 / 0. Rendered page: about 10% non-white, 6% coloured.
    assert non_white > 0.02, f"page looks blank ({non_white:.2%} non-white)"
    assert coloured > 0.01, f"no plot marks drawn ({coloured:.2%} coloured)"
