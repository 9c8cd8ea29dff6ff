#!/usr/bin/env bash
# Sets up everything audioqc needs on a fresh Debian machine: system packages (ffmpeg, used as a
# test oracle and by the benchmarks), a virtual environment with the locked dependencies, and
# the project itself (editable). Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

# ffmpeg: the test oracle (ebur128, silencedetect) and benchmark peer; espeak-ng and flite:
# synthetic speech for tests and the speech/music evaluation set; fluidsynth with
# fluid-soundfont-gm: MIDI rendered to music for that set; extremetuxracer-data: real recorded
# music (Ogg Vorbis) for the ffmpeg cross-checks and the music detector.
# asterisk-core-sounds-{en,fr,it,ru}-g722: recorded human speech (16 kHz telephone prompts,
# CC-BY-SA-3.0 / CC-BY-3.0) for the denoiser's tests and benchmark (testing/material/denoise.py).
# chromium: the headless browser in which tests/test_html_browser.py renders the trends and compare
# HTML reports (driven over the DevTools protocol: no chromedriver, no browser download).
# festival, festvox-us-slt-hts, festvox-kdlpc16k: a third text-to-speech engine (the HTS voice of the
# CMU ARCTIC slt speaker, full band, and the ked diphone voice) for the music detector's TTS tests,
# its evaluation corpus and evaluations/eval_tts_speech.py (issue 19); the asterisk prompts are also
# its recorded speech.
APT_PACKAGES="ffmpeg espeak-ng flite fluidsynth fluid-soundfont-gm extremetuxracer-data
  asterisk-core-sounds-en-g722 asterisk-core-sounds-fr-g722 asterisk-core-sounds-it-g722 asterisk-core-sounds-ru-g722
  chromium festival festvox-us-slt-hts festvox-kdlpc16k"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
# Building audiolib's C extension needs a C compiler and Python's headers; the venv needs venv/ensurepip.
command -v gcc >/dev/null 2>&1 || missing="$missing gcc"
"$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || missing="$missing python3-dev"
"$PY" -c 'import ensurepip, venv' 2>/dev/null || missing="$missing python3-venv"
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# pip's output without the noise of this machine's pip config (local indexes that may not exist)
# and setuptools' deprecation banners; pip's own exit status is kept (pipefail).
quiet() { "$@" 2>&1 | { grep -v -e "is ignored: it is neither" -e "BuildBackendWarning" -e "^  *[!*]" || true; }; }

stamp=.venv/.lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s requirements.lock "$stamp"; then
  quiet .venv/bin/python -m pip install -q --upgrade pip
  quiet .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip check
  cp requirements.lock "$stamp"
fi
quiet .venv/bin/python -m pip install -q --no-deps -e .
.venv/bin/python -c "import audiolib._kernels"  # the C extension built and loads
