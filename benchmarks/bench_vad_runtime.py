#!/usr/bin/env python3
"""Silero VAD as the analyzer runs it (its 8 kHz sequence network in OpenVINO, a chunk of 1024 frames
per call) against the shipped graph in onnxruntime called once per frame, as Silero's own loop
runs it: speed and agreement on the same audio, through the same streaming VoiceActivity.

Ten minutes of 16 kHz material (the DNSMOS selection clips of :mod:`testing.material.dnsmos`,
repeated: espeak-ng/flite speech, clean and noisy, music, speech over music) go through
:class:`audiolib.speech.VoiceActivity` (its batched rows) once with each session, the two in turn,
``--rounds`` times, on one thread. Printed: seconds per hour of audio (median of the rounds) and
the ratio; the largest difference of the per-frame probabilities and how many speech decisions
(probability >= 0.5) differ. Timings are printed, never asserted.

On a CPU with BF16 (AVX-512 BF16 or AMX) a third session runs the analyzer's sequence network with
its float parts in bf16 (OpenVINO's ``INFERENCE_PRECISION_HINT``, which the plugin would choose by
itself on AMX): the lever the analyzer does not take, because the probabilities would then depend on
the CPU (docs/perceptual-speed.md).

    taskset -c 1 .venv/bin/python -m benchmarks.bench_vad_runtime [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
import unittest.mock
from pathlib import Path

import numpy as np

import audiolib.speech as speech
from audiolib.cpu import cpu_features
from testing.material import dnsmos as dnsmos_material

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import header  # noqa: E402

SECONDS = 600.0
PUSH_S = 10.0


class _ShippedGraph:
    """The whole Silero graph in onnxruntime, called frame after frame (state carried over), behind
    the sequence session's interface: ``frames`` (steps, rows, 288) and ``state`` in, the
    per-frame probabilities (steps, rows) and the last state out."""

    def __init__(self) -> None:
        self._session = speech.onnx_session(speech.silero_vad_path())

    def run(self, output_names, feeds):
        frames, state = feeds["frames"], feeds["state"]
        sr = np.array(speech.MODEL_RATE_HZ, np.int64)
        out = np.empty(frames.shape[:2], np.float32)
        for t in range(frames.shape[0]):
            prob, state = self._session.run(None, {"input": frames[t], "state": state, "sr": sr})
            out[t] = prob[:, 0]
        return [out, state]


def _probabilities(session, audio: np.ndarray) -> tuple[np.ndarray, float]:
    # VoiceActivity looks its session up in speech._session (put back on the way out)
    with unittest.mock.patch.object(speech, "_session", lambda runtime="openvino": session):
        vad = speech.VoiceActivity()
        t0 = time.perf_counter()
        step = int(PUSH_S * speech.INPUT_RATE_HZ)
        for i in range(0, audio.size, step):
            vad.push(audio[i:i + step])
        return vad.probabilities(), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    print(header("bench_vad_runtime: Silero VAD runtimes"), flush=True)
    clips = [c.audio for c in dnsmos_material.clips("selection")]
    n = int(SECONDS * speech.INPUT_RATE_HZ)
    audio = np.resize(np.concatenate(clips), n).astype(np.float32)
    sessions = {
        "OpenVINO, sequence network (analyzer)": speech._session(),
        "onnxruntime, shipped graph per frame": _ShippedGraph(),
    }
    if cpu_features()["avx512_bf16"] or cpu_features()["amx"]:
        sessions["OpenVINO, sequence network, bf16"] = speech.OpenVinoSession(
            speech.silero_vad_8k_sequence_model(), precision="bf16")
    seconds: dict[str, list[float]] = {k: [] for k in sessions}
    probs: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name, session in sessions.items():
            probs[name], dt = _probabilities(session, audio)
            seconds[name].append(dt)
    per_hour = {k: float(np.median(v)) * 3600.0 / SECONDS for k, v in seconds.items()}
    a, pa = next(iter(probs.items()))
    print(f"Silero VAD on {SECONDS / 60:g} min of speech, music and noise, one thread, {args.rounds} rounds in turn:")
    for k, v in per_hour.items():
        print(f"  {k:36} {v:6.2f} s per hour of audio (every round: "
              + ", ".join(f"{x * 3600.0 / SECONDS:.2f}" for x in seconds[k]) + ")")
    for b, pb in list(probs.items())[1:]:
        print(f"  {b} against the analyzer: {per_hour[b] / per_hour[a]:.2f}x its time; probabilities differ by "
              f"at most {np.abs(pa - pb).max():.1e}; speech decisions differ on "
              f"{int(((pa >= 0.5) != (pb >= 0.5)).sum())} of {pa.size} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
