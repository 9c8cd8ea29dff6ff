"""Evaluate the music detector (and the voice-activity detector, if present) on the labelled corpus.

``python -m evaluations.eval_content [--json OUT] [--baseline-tree DIR]`` builds or reuses
``testing/material/content_corpus.py``'s clips, runs :class:`audiolib.music.MusicDetector` over every TEST
clip in 3 s blocks (as a decoder would feed it) and prints, at segment level (1 s): precision,
recall and F1 per class, the share of segments detected as music / speech per source type (music
only, speech only, speech over music, noise, silence), the corpus sizes and the detector's speed
(times realtime, one core). With ``--baseline-tree DIR`` the detector of that tree (an earlier
commit's) is run on the same clips in a process of its own and its figures are printed too.

Speech is evaluated when ``audiolib.speech`` (``VoiceActivity``, one probability per 32 ms frame) is
importable: a segment is speech when at least :data:`SPEECH_FRAME_SHARE` of its frames are above
``SPEECH_THRESHOLD``.

``python -m evaluations.eval_content --fit`` fits the music detector's logistic regression on the
TRAIN split and prints the constants to paste into ``audiolib/music.py``.

Exit status is non-zero only on a crash; nothing here asserts a score or a timing.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import soundfile as sf

from audiolib import music
from testing.material.content_corpus import KINDS, SEGMENT_S, SR_HZ, build_split, sources_of

#: A segment counts as speech when this share of its 32 ms VAD frames is above the VAD threshold
#: (a second with a few hundred ms of voice is speech; a click of 1-2 frames is not).
SPEECH_FRAME_SHARE = 0.30
BLOCK_SAMPLES = 48000  # 3 s blocks, as the decoder delivers them
#: Segments this far or nearer to a change of part see the other part through their context window.
FAR_FROM_BOUNDARY_SEGMENTS = 2
#: Ridge penalty (per sample) on the standardised weights. 0.03 since CORPUS_VERSION 3: with 0.01 the
#: fit left more files of a development set of TTS paragraphs over 5 % music (issue 19).
L2_LAMBDA = 0.03

try:  # the lead's voice-activity detector; evaluated when it exists
    from audiolib.speech import SPEECH_THRESHOLD
    from audiolib.speech import VoiceActivity as _VoiceActivity

    VoiceActivity: type[_VoiceActivity] | None = _VoiceActivity
except ImportError:  # pragma: no cover - depends on the tree's state
    VoiceActivity = None
    SPEECH_THRESHOLD = 0.5

assert music.SEGMENT_S == SEGMENT_S, "corpus labels and detector segments must have the same length"


def _read(path: str) -> np.ndarray:
    y, sr = sf.read(path, dtype="float32")
    assert sr == SR_HZ
    return y


def _blocks(y: np.ndarray):
    for i in range(0, y.size, BLOCK_SAMPLES):
        yield y[i: i + BLOCK_SAMPLES]


def speech_segments(frame_probs: np.ndarray, n_segments: int) -> np.ndarray:
    """Per-segment speech decision from per-frame VAD probabilities (frames of 512 samples)."""
    frame = 512
    per_seg = SEGMENT_S * SR_HZ / frame  # 31.25 frames per 1 s segment
    out = np.zeros(n_segments, bool)
    active = frame_probs > SPEECH_THRESHOLD
    for k in range(n_segments):
        a, b = int(round(k * per_seg)), int(round((k + 1) * per_seg))
        seg = active[a:b]
        out[k] = seg.size > 0 and seg.mean() >= SPEECH_FRAME_SHARE
    return out


def _boundary_distance(segs: list[dict]) -> list[int]:
    """Per segment: segments to the nearest part of another kind or source (context crosses it)."""
    keys = [(s["kind"], s["source"]) for s in segs]
    out = []
    for i, key in enumerate(keys):
        d = [abs(j - i) for j, other in enumerate(keys) if other != key]
        out.append(min(d) if d else len(keys))
    return out


def prf(pred: np.ndarray, truth: np.ndarray) -> dict:
    tp = int(np.sum(pred & truth))
    fp = int(np.sum(pred & ~truth))
    fn = int(np.sum(~pred & truth))
    p = tp / (tp + fp) if tp + fp else float("nan")
    r = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * p * r / (p + r) if tp else 0.0
    return {"precision": p, "recall": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
            "support": int(truth.sum()), "segments": int(truth.size)}


def run_split(split: str, *, with_speech: bool = True) -> dict:
    clips = build_split(split)
    feats, truth_m, truth_s, kinds, pred_s, dist, sources = [], [], [], [], [], [], []
    audio_s = music_s = speech_s = 0.0
    for clip in clips:
        y = _read(clip["path"])
        audio_s += y.size / SR_HZ
        t0 = time.perf_counter()
        det = music.MusicDetector(SR_HZ)
        for block in _blocks(y):
            det.push(block)
        f = det.features()
        music_s += time.perf_counter() - t0
        segs = clip["segments"]
        if f.shape[0] != len(segs):
            raise RuntimeError(f"{clip['path']}: {f.shape[0]} segments detected, {len(segs)} labelled")
        feats.append(f)
        dist += _boundary_distance(segs)
        sources += [s["source"] for s in segs]
        truth_m += [s["music"] for s in segs]
        truth_s += [s["speech"] for s in segs]
        kinds += [s["kind"] for s in segs]
        if with_speech and VoiceActivity is not None:
            t0 = time.perf_counter()
            vad = VoiceActivity(sample_rate_hz=SR_HZ)
            for block in _blocks(y):
                vad.push(block)
            pred_s.append(speech_segments(np.asarray(vad.probabilities()), len(segs)))
            speech_s += time.perf_counter() - t0
    return {"features": np.concatenate(feats), "music": np.array(truth_m), "speech": np.array(truth_s),
            "kind": np.array(kinds), "boundary_s": np.array(dist), "source": np.array(sources),
            "pred_speech": np.concatenate(pred_s) if pred_s else None,
            "audio_s": audio_s, "music_cpu_s": music_s, "speech_cpu_s": speech_s, "clips": clips}


# Run in another tree (its audiolib first on sys.path): the music probability of every segment of
# every listed clip, as that tree's detector computes it (3 s blocks, as here).
_BASELINE = r"""
import json, sys, time
import soundfile as sf
from audiolib import music
clips = [sf.read(path, dtype="float32") for path in json.load(open(sys.argv[1]))]
out, cpu = [], 0.0
for y, sr in clips:
    t = time.perf_counter()
    det = music.MusicDetector(sr)
    for i in range(0, y.size, 48000):
        det.push(y[i:i + 48000])
    feats = det.features()
    cpu += time.perf_counter() - t
    out.append(music.probability_from_features(feats).tolist())
json.dump({"p": out, "s": cpu}, open(sys.argv[2], "w"))
"""


def tree_probabilities(tree: str, clips: list[dict]) -> tuple[np.ndarray, float]:
    """Music probabilities of the clips by the detector of ``tree``, in a process of its own, and
    the seconds that detector took (reading the files excluded)."""
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        listing, result = os.path.join(tmp, "in.json"), os.path.join(tmp, "out.json")
        with open(listing, "w") as fh:
            json.dump([c["path"] for c in clips], fh)
        subprocess.run([sys.executable, "-P", "-c", _BASELINE, listing, result], check=True,
                       env=dict(os.environ, PYTHONPATH=str(tree)))
        with open(result) as fh:
            d = json.load(fh)
        return np.concatenate([np.asarray(p, dtype=np.float64) for p in d["p"]]), float(d["s"])


def fit_logistic(X: np.ndarray, y: np.ndarray,
                 lam: float = L2_LAMBDA) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method on standardised features."""
    mean, scale = X.mean(0), X.std(0) + 1e-9
    A = np.c_[np.ones(len(X)), (X - mean) / scale]
    w = np.zeros(A.shape[1])
    ridge = lam * len(X) * np.r_[0.0, np.ones(A.shape[1] - 1)]
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(A @ w, -60, 60)))
        H = A.T @ (A * (p * (1 - p))[:, None]) + np.diag(ridge)
        step = np.linalg.solve(H, A.T @ (p - y) + ridge * w)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return mean, scale, w[1:], float(w[0])


def _fmt(v: np.ndarray) -> str:
    items = [f"{x:.6g}" for x in v]
    lines = [", ".join(items[i: i + 7]) for i in range(0, len(items), 7)]
    return "np.array([\n    " + ",\n    ".join(lines) + ",\n])"


def fit(args) -> int:
    t0 = time.perf_counter()
    r = run_split("train", with_speech=False)
    X, y = r["features"], r["music"]
    keep = X[:, -1] >= music.MIN_LEVEL_DBFS  # the level gate decides the rest
    mean, scale, w, b = fit_logistic(X[keep, :-1], y[keep].astype(float), args.l2)
    p = music.probability_from_features(X, mean=mean, scale=scale, weights=w, bias=b)
    s = prf(p >= music.DECISION_THRESHOLD, y)
    print(f"# lambda {args.l2:g}; train: {len(y)} segments ({int(keep.sum())} above the level gate), "
          f"train-split F1 {s['f1']:.3f} ({time.perf_counter() - t0:.1f} s)")
    print("# " + ", ".join(f"{n}={wi:+.2f}" for n, wi in zip(music.FEATURE_NAMES, w, strict=True)))
    print(f"FEATURE_MEAN = {_fmt(mean)}")
    print(f"FEATURE_SCALE = {_fmt(scale)}")
    print(f"WEIGHTS = {_fmt(w)}")
    print(f"BIAS = {b:.6g}")
    return 0


def evaluate(args) -> int:  # noqa: C901 (a flat sequence of report sections)
    r = run_split("test", with_speech=True)
    p = music.probability_from_features(r["features"])
    pred_m = p >= music.DECISION_THRESHOLD
    res: dict = {"split": "test", "segment_s": SEGMENT_S, "audio_s": r["audio_s"]}
    res["music"] = prf(pred_m, r["music"])
    if r["pred_speech"] is not None:
        res["speech"] = prf(r["pred_speech"], r["speech"])
        res["speech_rule"] = {"frame_share": SPEECH_FRAME_SHARE, "threshold": SPEECH_THRESHOLD}
    res["by_kind"] = {}
    for k in KINDS:
        sel = r["kind"] == k
        far = sel & (r["boundary_s"] > FAR_FROM_BOUNDARY_SEGMENTS)
        row = {"segments": int(sel.sum()), "music_detected_share": float(pred_m[sel].mean()) if sel.any() else None,
               "segments_far": int(far.sum()),
               "music_detected_share_far": float(pred_m[far].mean()) if far.any() else None}
        if r["pred_speech"] is not None:
            row["speech_detected_share"] = float(r["pred_speech"][sel].mean()) if sel.any() else None
        res["by_kind"][k] = row
    train = build_split("train")
    res["sizes"] = {
        split: {"clips": len(c), "segments": sum(len(x["segments"]) for x in c),
                "source_recordings": sorted(sources_of(c))}
        for split, c in (("train", train), ("test", r["clips"]))}
    res["music_realtime_factor"] = r["audio_s"] / r["music_cpu_s"]
    if r["speech_cpu_s"]:
        res["speech_realtime_factor"] = r["audio_s"] / r["speech_cpu_s"]

    print(f"TEST split: {len(r['clips'])} clips, {r['music'].size} segments of {SEGMENT_S:g} s "
          f"({r['audio_s'] / 60:.1f} min); train: {res['sizes']['train']['segments']} segments; "
          f"source recordings (music pieces + voices) train {len(res['sizes']['train']['source_recordings'])}, "
          f"test {len(res['sizes']['test']['source_recordings'])}, shared "
          f"{len(set(res['sizes']['train']['source_recordings']) & set(res['sizes']['test']['source_recordings']))}")
    print()
    print(f"{'class':<8} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>8} {'TP':>5} {'FP':>5} {'FN':>5}")
    for cls in ("music", "speech"):
        if cls in res:
            m = res[cls]
            print(f"{cls:<8} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>6.3f} {m['support']:>8} "
                  f"{m['tp']:>5} {m['fp']:>5} {m['fn']:>5}")
    if "speech" not in res:
        print("speech   (audiolib.speech.VoiceActivity not importable: not evaluated)")
    print()
    far_head = f"(>{FAR_FROM_BOUNDARY_SEGMENTS} s from a part change)"
    print(f"{'source type':<12} {'segments':>8} {'music detected':>15} {far_head:>26}"
          + (f" {'speech detected':>16}" if "speech" in res else ""))
    names = {"music": "music only", "speech": "speech only", "mixture": "speech+music", "noise": "noise",
             "silence": "silence"}
    for k, row in res["by_kind"].items():
        far = row["music_detected_share_far"]
        far_txt = f"{far:.3f} of {row['segments_far']}" if far is not None else "-"
        line = f"{names[k]:<12} {row['segments']:>8} {row['music_detected_share']:>15.3f} {far_txt:>26}"
        if "speech" in res:
            line += f" {row['speech_detected_share']:>16.3f}"
        print(line)
    print()
    if args.by_source:
        for src in sorted(set(r["source"])):
            sel = r["source"] == src
            print(f"  {src:<60} {int(sel.sum()):>4} segments, music detected {pred_m[sel].mean():.2f}")
        print()
    if args.baseline_tree:
        pb, _ = tree_probabilities(args.baseline_tree, r["clips"])
        pred_b = pb >= 0.5
        res["baseline"] = {"tree": str(args.baseline_tree), "music": prf(pred_b, r["music"]), "by_kind": {}}
        m = res["baseline"]["music"]
        print(f"baseline ({args.baseline_tree}), same clips: music precision {m['precision']:.3f} recall "
              f"{m['recall']:.3f} F1 {m['f1']:.3f} (TP {m['tp']} FP {m['fp']} FN {m['fn']})")
        for k in KINDS:
            sel = r["kind"] == k
            far = sel & (r["boundary_s"] > FAR_FROM_BOUNDARY_SEGMENTS)
            all_share = float(pred_b[sel].mean()) if sel.any() else float("nan")
            far_share = float(pred_b[far].mean()) if far.any() else float("nan")
            res["baseline"]["by_kind"][k] = {"music_detected_share": all_share, "music_detected_share_far": far_share}
            print(f"  {names[k]:<12} {int(sel.sum()):>8} {all_share:>15.3f} {far_share:>20.3f} of {int(far.sum())}")
        print()
    print(f"speed: MusicDetector {res['music_realtime_factor']:.0f}x realtime (one core, 3 s blocks)"
          + (f"; VoiceActivity {res['speech_realtime_factor']:.0f}x" if "speech_realtime_factor" in res else ""))
    if args.baseline_tree and args.speed_rounds:
        from pathlib import Path

        from benchmarks.harness import cpu_model

        trees = {"this tree": str(Path(__file__).resolve().parent.parent), "baseline": str(args.baseline_tree)}
        times: dict[str, list[float]] = {k: [] for k in trees}
        for rnd in range(args.speed_rounds):
            for label in (list(trees) if rnd % 2 == 0 else list(trees)[::-1]):
                times[label].append(tree_probabilities(trees[label], r["clips"])[1])
        print(f"MusicDetector, s per hour of audio, each tree in its own process, fastest of {args.speed_rounds} "
              f"(CPU: {cpu_model()}):")
        for label, ts in times.items():
            per_hour = [t * 3600.0 / r["audio_s"] for t in ts]
            print(f"  {label:10} {min(per_hour):.2f}  (every round: {' '.join(f'{x:.2f}' for x in per_hour)})")
        res["speed_per_hour_s"] = {k: min(v) * 3600.0 / r["audio_s"] for k, v in times.items()}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1, default=float)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Evaluate the music (and speech) detector on the labelled corpus.")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    ap.add_argument("--by-source", action="store_true", help="also print the music share detected per source")
    ap.add_argument(
        "--baseline-tree",
        metavar="DIR",
        help="also evaluate the music detector of another tree (a checkout of an earlier commit) on the same clips",
    )
    ap.add_argument(
        "--speed-rounds",
        type=int,
        default=0,
        metavar="N",
        help="with --baseline-tree: also time both detectors, in turn, N times (run it pinned: taskset -c 0)",
    )
    ap.add_argument("--fit", action="store_true",
                    help="fit the music detector on the TRAIN split and print its constants")
    ap.add_argument("--l2", type=float, default=L2_LAMBDA, help=f"--fit: ridge penalty (default {L2_LAMBDA:g})")
    args = ap.parse_args(argv)
    return fit(args) if args.fit else evaluate(args)


if __name__ == "__main__":
    raise SystemExit(main())
