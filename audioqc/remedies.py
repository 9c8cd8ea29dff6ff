"""Remedies: the fixes a QC policy may name for its rules, with their parameters.

A rule names the remedy that repairs it (``remedy: loudness``), and the policy sets each remedy's
parameters (``remedies: {loudness: {target_lufs: -23.0}}``); see :mod:`audioqc.policy`. Two remedies
exist, applied in this order when a file needs both (the denoiser changes the loudness):

``denoise``
    Speech noise removal (:mod:`audiolib.denoise`, DeepFilterNet3). ``amount``: 1..100, the most
    attenuation in dB anywhere, 100 = full (default 100).
``loudness``
    A gain to ``target_lufs`` and a true-peak limiter at ``true_peak_max_dbtp`` (default -1.0
    dBTP, EBU R 128) (:mod:`audiolib.normalize`). ``gating``: ``level`` (BS.1770 integrated
    loudness) or ``speech`` (dialogue-gated); by default the gating of the rule that names the
    remedy (``loudness_speech_integrated_lufs`` -> speech). No default target: a delivery spec
    names its own.

Both take ``format`` (``wav``, ``flac``, ``mp3``, ...; :data:`audiolib.io.OUTPUT_FORMATS`): the
remedied file's format, by default the original's.

Failures no automatic fix can honestly repair (clipping, bandwidth, dropouts, sample rate) have no
remedy: lowering a clipped file's level would only hide its flat tops from the detector.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audiolib.errors import InvalidParameter


def _excerpt(value: Any) -> str:
    """A value as an error message may quote it (at most 80 characters)."""
    text = repr(value if not isinstance(value, str) else value[:81])
    return text if len(text) <= 80 else text[:77] + "..."

#: Remedies in the order they are applied.
REMEDY_ORDER = ("denoise", "loudness")
#: Which metrics each remedy repairs (a remedy never clears a failure on another metric; see
#: :func:`addressed_by`).
REPAIRS: dict[str, tuple[str, ...]] = {
    "denoise": ("noise_score_", "quality_score_"),
    "loudness": ("loudness_integrated_lufs", "loudness_speech_integrated_lufs", "loudness_true_peak_dbtp",
                 "loudness_sample_peak_dbfs", "loudness_momentary_max_lufs", "loudness_short_term_max_lufs"),
}
#: Loudness targets a remedy accepts (LUFS): BS.1770 gating stops at -70 LUFS.
TARGET_RANGE_LUFS = (-70.0, 0.0)
#: True-peak ceilings a remedy accepts (dBTP).
CEILING_RANGE_DBTP = (-20.0, 0.0)


@dataclass(frozen=True)
class Remedy:
    """A remedy with its validated parameters; ``text`` is how the report lists it."""

    name: str
    params: tuple[tuple[str, Any], ...]

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def text(self) -> str:
        """``denoise(amount=100)``, ``loudness(target_lufs=-23.0, true_peak_max_dbtp=-1.0)``."""
        shown = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in self.params
                          if (k, v) != ("gating", "level"))  # the default gating goes without saying
        return f"{self.name}({shown})"


def _number(value: Any, where: str, key: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidParameter(f"{where}: {key} must be a number, got {_excerpt(value)}")
    if not lo <= value <= hi:
        raise InvalidParameter(f"{where}: {key}={_excerpt(value)} must be from {lo:g} to {hi:g}")
    return float(value)


def _format(value: Any, where: str) -> str:
    from audiolib.io import OUTPUT_FORMATS

    text = value.lower().lstrip(".") if isinstance(value, str) else value
    if text not in OUTPUT_FORMATS:
        raise InvalidParameter(f"{where}: format={_excerpt(value)} is not an output format; "
                               f"formats: {', '.join(OUTPUT_FORMATS)}")
    return str(text)


_KEYS = {"denoise": ("amount", "format"), "loudness": ("target_lufs", "true_peak_max_dbtp", "gating", "format")}


def validate(name: str, raw: Any, where: str, *, gating: str = "level") -> Remedy:
    """One remedy's parameters, checked and completed with defaults.

    ``gating`` is the default for the loudness remedy (from the rules that name it).
    """
    if name not in REMEDY_ORDER:
        close = difflib.get_close_matches(str(name), REMEDY_ORDER, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidParameter(f"{where}: unknown remedy {_excerpt(name)}{hint}; remedies: {', '.join(REMEDY_ORDER)}")
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InvalidParameter(f"{where}: the parameters of remedy {_excerpt(name)} are a mapping, got {_excerpt(raw)}")
    unknown = [k for k in raw if k not in _KEYS[name]]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), _KEYS[name], n=1, cutoff=0.6)
            hints.append(f"{_excerpt(k)}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise InvalidParameter(f"{where}: remedy {_excerpt(name)}: unknown parameter(s) {', '.join(hints)}; "
                               f"parameters: {', '.join(_KEYS[name])}")
    params: dict[str, Any] = {}
    if name == "denoise":
        amount = raw.get("amount", 100)
        if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= 100:
            raise InvalidParameter(
                f"{where}: remedy 'denoise': amount={_excerpt(amount)} must be an integer from 1 to 100"
            )
        params["amount"] = amount
    else:
        if "target_lufs" not in raw:
            raise InvalidParameter(f"{where}: remedy 'loudness' needs target_lufs (the delivery target, e.g. "
                                   f"-23.0): no default fits every spec")
        params["target_lufs"] = _number(raw["target_lufs"], f"{where}: remedy 'loudness'", "target_lufs",
                                        *TARGET_RANGE_LUFS)
        params["true_peak_max_dbtp"] = _number(raw.get("true_peak_max_dbtp", -1.0), f"{where}: remedy 'loudness'",
                                               "true_peak_max_dbtp", *CEILING_RANGE_DBTP)
        g = raw.get("gating", gating)
        if g not in ("level", "speech"):
            raise InvalidParameter(f"{where}: remedy 'loudness': gating={_excerpt(g)} must be 'level' or 'speech'")
        params["gating"] = g
    if "format" in raw:
        params["format"] = _format(raw["format"], f"{where}: remedy {name!r}")
    return Remedy(name, tuple(params.items()))


def addressed_by(metric: str, remedies: list[Remedy] | tuple[Remedy, ...]) -> bool:
    """Whether one of ``remedies`` repairs ``metric`` (so its failure may clear after them)."""
    return any(metric == p or (p.endswith("_") and metric.startswith(p))
               for r in remedies for p in REPAIRS[r.name])


def output_format(remedies: list[Remedy] | tuple[Remedy, ...]) -> str | None:
    """The remedied file's format asked by the remedies (None: the original's)."""
    formats = {r.options["format"] for r in remedies if "format" in r.options}
    if len(formats) > 1:
        raise InvalidParameter(f"remedies ask for different output formats: {', '.join(sorted(formats))}")
    return next(iter(formats), None)
