"""The metrics people watch across runs, which way is worse, and the practical margins.

Trends (:mod:`audioqc.trends`) and comparisons (:mod:`audioqc.compare`) summarise these report
columns. Each has a direction (``higher`` is better, ``lower`` is better, or ``either``: a move
either way is a problem, as for loudness against a target) and a practical margin: the smallest
shift of the statistic that matters in practice. An alert needs a shift beyond the margin in the
bad direction *and* statistical support (see :mod:`audioqc.trends`). Margins are overridable
(``--margin METRIC:VALUE``; ``margins={...}`` in Python).

Default margins and why:

======================================  ======  =========  =================================================
metric                                  better  margin     why
======================================  ======  =========  =================================================
``quality_score_average`` (0-10)        higher  0.5        0.2 MOS on P.835's 1-5 scale (score = 2.5 x MOS)
``noise_score_average`` (0-10)          higher  0.5        the same on the background-noise scale
``noise_score_snr_db``                  higher  3 dB       a doubling of the noise power
``loudness_integrated_lufs``            either  1.0 LU     EBU R 128's production tolerance (+-1 LU)
``loudness_true_peak_dbtp``             lower   1.0 dB     the step between -1 and -2 dBTP delivery specs
``loudness_range_lu``                   either  2.0 LU     a clearly audible change of dynamics
``speech_percentage``                   either  10 points  a tenth of the programme changed class
``music_percentage``                    either  10 points  the same
``clipping_events``                     lower   5 points   share of files with any clipping event
``silence_percentage``                  lower   5 points   a twentieth of the programme gone silent
``bandwidth_hz``                        higher  1000 Hz    a low-pass or low-bitrate encoder setting
======================================  ======  =========  =================================================

The statistic is the median of the files' values, except for ``clipping_events``, where it is
the share of files with at least one event (the median of a count that is mostly zero would not
move until half the files clip).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache

import pyarrow as pa

from audiolib.errors import InvalidParameter

from .report import metric_columns, metric_type

DIRECTIONS = ("higher", "lower", "either")


@dataclass(frozen=True)
class Watched:
    """One watched metric: report column, label, unit, better direction, margin, statistic.

    ``statistic`` is ``"median"`` (of the files' values) or ``"share"`` (share of files with a
    value above zero, in percent; the margin is then in percentage points).
    """

    column: str
    label: str
    unit: str
    better: str
    margin: float
    statistic: str = "median"

    def badness(self, shift: float) -> float:
        """How far a shift goes in the bad direction (>= 0 is bad; ``either``: its size)."""
        if self.better == "higher":
            return -shift
        if self.better == "lower":
            return shift
        return abs(shift)

    def to_dict(self) -> dict[str, object]:
        return {"metric": self.column, "label": self.label, "unit": self.unit, "better": self.better,
                "margin": self.margin, "statistic": self.statistic}


WATCHED: tuple[Watched, ...] = (
    Watched("quality_score_average", "quality score", "0-10", "higher", 0.5),
    Watched("noise_score_average", "noise score", "0-10", "higher", 0.5),
    Watched("noise_score_snr_db", "SNR", "dB", "higher", 3.0),
    Watched("loudness_integrated_lufs", "integrated loudness", "LUFS", "either", 1.0),
    Watched("loudness_true_peak_dbtp", "true peak", "dBTP", "lower", 1.0),
    Watched("loudness_range_lu", "loudness range", "LU", "either", 2.0),
    Watched("speech_percentage", "speech share", "%", "either", 10.0),
    Watched("music_percentage", "music share", "%", "either", 10.0),
    Watched("clipping_events", "files with clipping", "%", "lower", 5.0, statistic="share"),
    Watched("silence_percentage", "silence share", "%", "lower", 5.0),
    Watched("bandwidth_hz", "bandwidth", "Hz", "higher", 1000.0),
)
WATCHED_BY_NAME = {w.column: w for w in WATCHED}


@lru_cache(maxsize=1)
def numeric_metrics() -> tuple[str, ...]:
    """Every numeric metric column of the report (what a gate or a margin may name)."""
    out = []
    for name in metric_columns():
        t = metric_type(name)
        if (pa.types.is_integer(t) or pa.types.is_floating(t)) and not pa.types.is_boolean(t):
            out.append(name)
    return tuple(out)


def check_metric(name: str, where: str) -> str:
    """``name`` if it is a numeric metric column; else :class:`InvalidParameter` naming ``where``
    and suggesting close names (as policies do)."""
    columns = numeric_metrics()
    if name in columns:
        return name
    close = difflib.get_close_matches(name, columns, n=3, cutoff=0.6)
    hint = (
        f"; did you mean {', '.join(close)}?"
        if close
        else "; numeric metrics are listed by audioqc.report.metric_columns()"
    )
    if name in metric_columns():
        raise InvalidParameter(f"{where}: metric {name!r} is not numeric{hint}")
    raise InvalidParameter(f"{where}: unknown metric {name!r}{hint}")


def watched(name: str, margin: float | None = None, better: str | None = None) -> Watched:
    """The :class:`Watched` entry for a column (a numeric column outside the list gets
    ``better`` or ``either``, margin 0), with ``margin`` overriding the default."""
    base = WATCHED_BY_NAME.get(name) or Watched(name, name, "", better or "either", 0.0)
    if margin is None and better is None:
        return base
    return Watched(base.column, base.label, base.unit, better or base.better,
                   base.margin if margin is None else margin, base.statistic)


def parse_metric_value(text: str, where: str) -> tuple[str, str]:
    """Split ``METRIC:VALUE`` (the value kept as text); :class:`InvalidParameter` if malformed."""
    if not isinstance(text, str) or text.count(":") != 1:
        raise InvalidParameter(f"{where} {text!r}: write METRIC:VALUE, e.g. quality_score_average:-0.3")
    name, value = (part.strip() for part in text.split(":"))
    if not name or not value:
        raise InvalidParameter(f"{where} {text!r}: write METRIC:VALUE, e.g. quality_score_average:-0.3")
    return check_metric(name, f"{where} {text!r}"), value


def parse_number(text: str, where: str) -> float:
    """A finite number from text; :class:`InvalidParameter` quoting it otherwise."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise InvalidParameter(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidParameter(f"{where}: {text!r} is not a finite number")
    return value


def parse_margins(items: list[str] | tuple[str, ...] | dict[str, float] | None) -> dict[str, float]:
    """``--margin METRIC:VALUE`` items (or a mapping) as ``{metric: margin >= 0}``."""
    if not items:
        return {}
    pairs = items.items() if isinstance(items, dict) else [parse_metric_value(t, "--margin") for t in items]
    out = {}
    for name, value in pairs:
        check_metric(name, "--margin")
        number = parse_number(str(value), f"--margin {name}")
        if number < 0:
            raise InvalidParameter(f"--margin {name}:{value}: a margin is a size, >= 0")
        out[name] = number
    return out
