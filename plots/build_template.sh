#!/usr/bin/env bash
# Rebuild plots/offline_template.html: a `dvc plots show` HTML template with
# vega, vega-lite and vega-embed inlined, so the page renders with no network.
#
# Usage:  plots/build_template.sh [OUTPUT]        (default: plots/offline_template.html)
# Needs:  npm (registry access), python3, tar.
# Versions can be overridden with VEGA_VERSION / VEGA_LITE_VERSION / VEGA_EMBED_VERSION.
# dvc-render 1.0.2's default page loads vega@5.20.2, vega-lite@5.2.0, vega-embed@6.18.2
# from jsDelivr; the defaults below are the newest releases of the same major lines
# (vega 5 / vega-lite 5 / vega-embed 6; vega 6, vega-lite 6, vega-embed 7 are ESM-only).
set -euo pipefail

VEGA_VERSION="${VEGA_VERSION:-5.33.1}"
VEGA_LITE_VERSION="${VEGA_LITE_VERSION:-5.23.0}"
VEGA_EMBED_VERSION="${VEGA_EMBED_VERSION:-6.29.0}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/offline_template.html}"

work="$(mktemp -d /tmp/dvc-plots-template.XXXXXX)"
trap 'rm -rf "$work"' EXIT

cd "$work"
for spec in "vega@$VEGA_VERSION" "vega-lite@$VEGA_LITE_VERSION" "vega-embed@$VEGA_EMBED_VERSION"; do
    name="${spec%@*}"
    tgz="$(npm pack --silent "$spec" | tail -n 1)"
    mkdir "$name"
    tar xzf "$tgz" -C "$name"
done

python3 - "$work" "$out" <<'PY'
import json, re, sys
from pathlib import Path

work, out = Path(sys.argv[1]), Path(sys.argv[2])
pkgs = [("vega", "vega.min.js"), ("vega-lite", "vega-lite.min.js"),
        ("vega-embed", "vega-embed.min.js")]

# vega's npm tarballs stopped shipping LICENSE at some 5.x release; the text
# below is the LICENSE file shipped in vega@5.20.2 (same project, BSD-3-Clause).
VEGA_FALLBACK_LICENSE = """Copyright (c) 2015-2018, University of Washington Interactive Data Lab
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.

3. Neither the name of the copyright holder nor the names of its contributors
  may be used to endorse or promote products derived from this software
  without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT OWNER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""

# dvc_render.html.HTML.embed() does plain str.replace of these on the whole page.
PLACEHOLDERS = ("{scripts}", "{plot_divs}", "{refresh_tag}")

scripts, versions = [], []
for name, build in pkgs:
    root = work / name / "package"
    meta = json.loads((root / "package.json").read_text(encoding="utf8"))
    version = meta["version"]
    versions.append(f"{name}@{version}")
    js = (root / "build" / build).read_text(encoding="utf8")
    # Drop the source-map reference (the .map file is not shipped with the page).
    js = re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", js)
    low = js.lower()
    for bad in ("</script", "<!--", "<script"):
        if bad in low:
            sys.exit(f"{name}: {bad!r} inside the bundle would break inline <script>")
    for ph in PLACEHOLDERS:
        if ph in js:
            sys.exit(f"{name}: bundle contains DVC placeholder {ph}")
    lic_file = root / "LICENSE"
    if lic_file.is_file():
        lic, lic_src = lic_file.read_text(encoding="utf8"), "package LICENSE file"
    elif name == "vega":
        lic, lic_src = VEGA_FALLBACK_LICENSE, "LICENSE of vega@5.20.2 (not in this tarball)"
    else:
        sys.exit(f"{name}@{version}: no LICENSE file in the npm tarball")
    if "*/" in lic:
        sys.exit(f"{name}: LICENSE text contains '*/'")
    header = (
        f"/*! {name}@{version} -- https://www.npmjs.com/package/{name}\n"
        f" * file: {name}/build/{build} from the npm tarball\n"
        f" * license: {meta.get('license')} ({lic_src}):\n *\n"
        + "".join(f" * {l}".rstrip() + "\n" for l in lic.strip().splitlines())
        + " */\n"
    )
    scripts.append(f'<script type="text/javascript">\n{header}{js.rstrip()}\n</script>')

page = f"""<!DOCTYPE html>
<html>
<head>
    <!-- Offline template for `dvc plots show`.
         Generated by plots/build_template.sh -- do not edit by hand.
         Inlined: {", ".join(versions)} (BSD-3-Clause, notices below).
         Must contain the plot_divs placeholder; deliberately has no scripts
         placeholder, which DVC would fill with CDN <script src> tags. -->
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{chr(10).join(scripts)}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""
assert page.count("{plot_divs}") == 1 and "{scripts}" not in page
out.write_text(page, encoding="utf8")
print(f"wrote {out} ({len(page.encode()):,} bytes): {', '.join(versions)}")
PY
