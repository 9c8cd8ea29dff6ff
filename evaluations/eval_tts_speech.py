#!/usr/bin/env python3
"""Music detected in text-to-speech and recorded speech (issue 19, item 3), this tree against another.

A steady, clear synthetic voice is what the music detector used to take for music (flite's ``slt``
read 36 % music). This script synthesises speech with three engines and nine voices, reads recorded
speech, and prints the share of 1 s segments :class:`audiolib.music.MusicDetector` calls music
(``decisions()``, what ``music.percentage`` reports), for this tree and, with ``--baseline-tree DIR``,
for the code in DIR (a checkout of an earlier commit), each in its own process, in the same run.

Material (generated here, cached in ``benchmarks/out/tts_speech/``; nothing is downloaded):

* **TTS**: three English paragraphs written for this script (an audiobook opening, a product
  voice-over, a podcast introduction; none is in ``content_corpus.py``, and they were written after
  the detector's features were designed; the last choices, the regularisation and the off-comb peak
  count, were made on other texts, though this script had been run with the alternatives too),
  each read twice in one file, as the issue's example was, by
  flite (``slt``, ``rms``, ``awb``, ``kal16``), espeak-ng (``en-us``, ``en+f4``, ``en-us+f3``) and
  festival (``cmu_us_slt_arctic_hts``, the HTS voice of the CMU ARCTIC slt speaker at 32 kHz, and
  ``ked_diphone``), at the engines' own levels, resampled to 16 kHz with soxr (as
  :mod:`audiolib.perceptual` feeds the detector). Voices that are also in the detector's TRAIN
  split (other texts) are marked.
* **Recorded speech**: 90 s of each Asterisk core-sounds voice (US English, Canadian French,
  Italian, Russian; Debian's ``asterisk-core-sounds-*-g722``, 16 kHz G.722), prompts in an order
  seeded differently from the corpus's.
* **Two voices**: flite ``slt`` and espeak-ng ``en-us`` in turn, sentence by sentence.
* **The issue's sequence**: 20 s of ``slt`` speech, 20 s of recorded instrumental music
  (``start1-jt.ogg`` of extremetuxracer-data, a TEST-split recording), 20 s of ``slt`` speech:
  truth 33.3 % music; also printed: segments called music inside and outside the music part.
* **Speech over music** (must still be music): each TTS voice's first paragraph over a recorded
  music bed (``freezingpoint.ogg``, a TEST-split recording) 10, 15 and 20 dB under the speech.
* **Recorded music** (must be music): the ten tracks of extremetuxracer-data, whole.

    taskset -c 0 .venv/bin/python -m evaluations.eval_tts_speech [--baseline-tree DIR] [--json OUT]

Exit status is non-zero only on a crash; nothing here asserts a score.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import header
from testing.material.content_corpus import VOICES, _read_16k_mono, _trim, tts
from testing.material.media import REAL_MUSIC_DIR

SR_HZ = 16000
# with the other generated media (gitignored)
OUT_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "out" / "tts_speech"
REPO = Path(__file__).resolve().parent.parent

PARAGRAPHS = (
    ("Chapter three. The storm had passed by morning, and the harbour was calm again. Mara walked "
     "down to the water with her father's old notebook under her arm. She had read the first page a "
     "hundred times, but today, for the first time, she understood what the numbers meant."),
    ("Looking for a simple way to keep your plants healthy? Our new garden sensor measures light, "
     "water and temperature every ten minutes, and sends a short report to your phone. Setup takes "
     "less than five minutes, and the battery lasts a whole season."),
    ("Hello and welcome back to the show. Today we are talking about sleep: why we need it, what "
     "happens when we do not get enough, and a few habits that really make a difference. Our guest "
     "is a researcher who has studied sleep for more than twenty years."),
)
#: (engine, voice) of the TTS material.
TTS_VOICES = (
    ("flite", "slt"), ("flite", "rms"), ("flite", "awb"), ("flite", "kal16"),
    ("espeak", "en-us"), ("espeak", "en+f4"), ("espeak", "en-us+f3"),
    ("festival", "cmu_us_slt_arctic_hts"), ("festival", "ked_diphone"),
)
RECORDED_VOICES = ("en_US_f_Allison", "fr_CA_f_June", "it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU")
RECORDED_S = 90.0
SEQUENCE_MUSIC = "start1-jt.ogg"
BED_MUSIC = "freezingpoint.ogg"
BED_DB = (10.0, 15.0, 20.0)

# Run in the tree under test (its audiolib first on sys.path): decisions of every file listed.
DETECT = r"""
import json, sys
import numpy as np
from audiolib.music import MusicDetector
out = {}
for name, path in json.load(open(sys.argv[1])).items():
    y = np.fromfile(path, np.float32)
    det = MusicDetector(16000)
    for i in range(0, y.size, 48000):  # 3 s blocks, as the decoder delivers them
        det.push(y[i:i + 48000])
    out[name] = [bool(d) for d in det.decisions()]
json.dump(out, open(sys.argv[2], "w"))
"""




def _level(y: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(y.astype(np.float64) ** 2) + 1e-20))


def _music(name: str, dest: Path) -> np.ndarray:
    path = os.path.join(REAL_MUSIC_DIR, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: scripts/setup.sh installs the Debian package extremetuxracer-data")
    local = dest / name
    if not local.exists():
        local.symlink_to(path)
    return _read_16k_mono(local)


def build(dest: Path = OUT_DIR) -> dict[str, dict]:
    """Every file of the evaluation: name -> {"path" (16 kHz float32 raw), "group", "music" (truth
    per 1 s segment, or None where all are speech), ...}."""
    from testing.material import denoise as denoise_material

    dest.mkdir(parents=True, exist_ok=True)
    train_voices = {(e, v) for e, v, _, _ in VOICES["train"]}
    items: dict[str, dict] = {}

    def save(name: str, y: np.ndarray, **info) -> None:
        path = dest / f"{name.replace(':', '_').replace('+', '_')}.f32"
        np.asarray(y, np.float32).tofile(path)
        items[name] = {"path": str(path), **info}

    firsts = {}
    for engine, voice in TTS_VOICES:
        for i, text in enumerate(PARAGRAPHS):
            y = tts(engine, voice, text + " " + text, dest / f"{engine}_{voice.replace('+', '_')}_{i}.wav")
            save(f"{engine}:{voice}#{i}", y, group="tts", voice=f"{engine}:{voice}",
                 in_train=(engine, voice) in train_voices)
            if i == 0:
                firsts[(engine, voice)] = _trim(y)
    rng = np.random.default_rng(19)
    for voice in RECORDED_VOICES:
        files = list(denoise_material._speech_prompts(voice))
        rng.shuffle(files)
        parts, total = [], 0
        for f in files:
            u = np.array(denoise_material._prompt(f), np.float32)
            parts += [u, np.zeros(int(rng.uniform(0.15, 0.45) * SR_HZ), np.float32)]
            total += u.size
            if total >= RECORDED_S * SR_HZ:
                break
        save(f"recorded:{voice}", np.concatenate(parts), group="recorded", voice=f"recorded:{voice}",
             in_train=("recorded", voice) in train_voices)
    # two voices, sentence by sentence
    sentences = [s.strip() + "." for p in PARAGRAPHS for s in p.split(".") if s.strip()]
    parts = []
    for i, sentence in enumerate(sentences):
        engine, voice = (("flite", "slt"), ("espeak", "en-us"))[i % 2]
        u = _trim(tts(engine, voice, sentence, dest / f"sent_{i}_{engine}_{voice}.wav"))
        parts += [u, np.zeros(int(0.3 * SR_HZ), np.float32)]
    save("two voices: flite:slt + espeak:en-us", np.concatenate(parts), group="two voices")
    # the sequence: 20 s speech, 20 s music, 20 s speech
    slt = np.concatenate([_trim(tts("flite", "slt", p, dest / f"seq_slt_{i}.wav")) for i, p in enumerate(PARAGRAPHS)])
    music = _music(SEQUENCE_MUSIC, dest)
    n = 20 * SR_HZ
    piece = music[30 * SR_HZ: 30 * SR_HZ + n]
    piece = piece * 10 ** ((_level(slt[:n]) - _level(piece)) / 20)
    seq = np.concatenate([slt[:n], piece, slt[n:2 * n]])
    save(
        "sequence: 20 s slt, 20 s music, 20 s slt",
        seq,
        group="sequence",
        music=[False] * 20 + [True] * 20 + [False] * 20,
    )
    # speech over a recorded bed
    bed = _music(BED_MUSIC, dest)
    for (engine, voice), y in firsts.items():
        for db in BED_DB:
            b = np.resize(bed[10 * SR_HZ:], y.size)  # looped if the speech is longer
            b = b * 10 ** ((_level(y) - db - _level(b)) / 20)
            save(f"{engine}:{voice} over music -{db:g} dB", y + b, group="over music", voice=f"{engine}:{voice}",
                 music=[True] * round(y.size / SR_HZ))
    for song in sorted(Path(REAL_MUSIC_DIR).glob("*.ogg")):
        y = _music(song.name, dest)
        save(f"music:{song.name}", y, group="music file", music=[True] * round(y.size / SR_HZ))
    return items


def detect(tree: Path, items: dict[str, dict]) -> dict[str, np.ndarray]:
    """Decisions of the detector of ``tree`` on every item, in a process of its own."""
    with tempfile.TemporaryDirectory() as tmp:
        listing, result = Path(tmp) / "in.json", Path(tmp) / "out.json"
        listing.write_text(json.dumps({k: v["path"] for k, v in items.items()}))
        env = dict(os.environ, PYTHONPATH=str(tree))
        subprocess.run([sys.executable, "-P", "-c", DETECT, str(listing), str(result)], check=True, env=env)
        return {k: np.array(v, bool) for k, v in json.loads(result.read_text()).items()}


def pct(d: np.ndarray) -> float:
    return 100.0 * float(d.mean()) if d.size else 0.0


def _print_tts(items: dict, runs: dict, labels: list[str]) -> None:
    """The TTS table: music % per voice (all its files, and its worst file), then per tree."""
    print("\nTTS speech, each paragraph read twice (music % of 1 s segments; per voice: all three files,"
          " and the worst file)")
    print(
        f"{'voice':34} {'in TRAIN':>8} {'segments':>8}"
        + "".join(f" {lab + ' %':>12} {'worst file':>10}" for lab in labels)
    )
    by_voice: dict[str, list[str]] = {}
    for name, it in items.items():
        if it["group"] == "tts":
            by_voice.setdefault(it["voice"], []).append(name)
    for voice, names in by_voice.items():
        in_train = "yes" if items[names[0]]["in_train"] else "no"
        line = f"{voice:34} {in_train:>8} {sum(runs[labels[0]][n].size for n in names):>8}"
        for lab in labels:
            d = np.concatenate([runs[lab][n] for n in names])
            line += f" {pct(d):12.1f} {max(pct(runs[lab][n]) for n in names):10.1f}"
        print(line)
    for lab in labels:
        tts = [n for n, it in items.items() if it["group"] == "tts"]
        d = np.concatenate([runs[lab][n] for n in tts])
        per_voice = [pct(np.concatenate([runs[lab][n] for n in names])) for names in by_voice.values()]
        engines = {v.split(":")[0] for v in by_voice}
        print(
            f"  {lab}: all TTS {pct(d):.1f} % music; voices at or under 5 %: {sum(v <= 5.0 for v in per_voice)} of "
            f"{len(per_voice)}; engines with every voice at or under 5 %: "
            f"{sorted(engines - {v.split(':')[0] for v, p in zip(by_voice, per_voice, strict=True) if p > 5.0})}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-tree", type=Path, default=None, help="also run the detector of this tree")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args(argv)
    items = build()
    trees = {"this tree": REPO}
    if args.baseline_tree is not None:
        trees["baseline"] = args.baseline_tree.resolve()
    runs = {label: detect(tree, items) for label, tree in trees.items()}
    labels = list(trees)
    print(header("eval_tts_speech: music detected in TTS and recorded speech"))
    print("trees: " + ", ".join(f"{k} = {v}" for k, v in trees.items()))
    res: dict = {"trees": {k: str(v) for k, v in trees.items()}, "items": {}}

    _print_tts(items, runs, labels)
    print("\nrecorded speech, two voices in turn, and the issue's sequence (music %)")
    print(f"{'file':44} {'segments':>8}" + "".join(f" {lab + ' %':>12}" for lab in labels))
    for name, it in items.items():
        if it["group"] in ("recorded", "two voices", "sequence"):
            print(
                f"{name:44} {runs[labels[0]][name].size:>8}"
                + "".join(f" {pct(runs[lab][name]):12.1f}" for lab in labels)
            )
            if it["group"] == "sequence":
                truth = np.array(it["music"], bool)
                for lab in labels:
                    d = runs[lab][name][: truth.size]
                    print(
                        f"    {lab}: truth {pct(truth):.1f} %; music part called music {int(d[truth].sum())} of "
                        f"{int(truth.sum())} s, speech parts called music {int(d[~truth].sum())} of "
                        f"{int((~truth).sum())} s"
                    )
    print(
        "\nTTS speech over a recorded music bed (music % of segments; truth 100 %), "
        f"bed {' / '.join(f'-{d:g}' for d in BED_DB)} dB"
    )
    for lab in labels:
        cells = []
        for db in BED_DB:
            names = [n for n, it in items.items() if it["group"] == "over music" and n.endswith(f"-{db:g} dB")]
            cells.append(pct(np.concatenate([runs[lab][n] for n in names])))
        print(f"  {lab:10} " + " / ".join(f"{c:.1f}" for c in cells))
    print("\nrecorded music, whole files (music %; truth 100 %)")
    for lab in labels:
        songs = [n for n, it in items.items() if it["group"] == "music file"]
        vals = [pct(runs[lab][n]) for n in songs]
        print(f"  {lab:10} {len(songs)} files: {min(vals):.1f} .. {max(vals):.1f} %, all segments "
              f"{pct(np.concatenate([runs[lab][n] for n in songs])):.1f} %")
    for name, it in items.items():
        res["items"][name] = {k: v for k, v in it.items() if k != "path"}
        res["items"][name]["music_pct"] = {lab: pct(runs[lab][name]) for lab in labels}
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
