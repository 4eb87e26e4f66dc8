#!/usr/bin/env bash
# Installs ONNX Runtime for Node.js (onnxruntime-node 1.30.0, CPU binaries bundled in the
# npm package) into $KILN_ORT_DIR (default ~/.cache/kiln-ort) for bench/visualbert.sh.
# --ignore-scripts: the package's post-install step only fetches GPU binaries from NuGet.
set -euo pipefail
dir=${KILN_ORT_DIR:-$HOME/.cache/kiln-ort}
if [ -f "$dir/node_modules/onnxruntime-node/package.json" ]; then exit 0; fi
command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
mkdir -p "$dir"
(cd "$dir" && npm install --silent --ignore-scripts onnxruntime-node@1.30.0 >/dev/null)
echo "onnxruntime-node installed in $dir"
