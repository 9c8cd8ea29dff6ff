"""Synthetic QC report histories with known answers (for tests/test_trends.py, the trends
benchmark and docs/trends.md's figures).

Every run reports a window of a catalogue of files (ids ``i * new_per_run`` to
``i * new_per_run + files_per_run - 1`` in run i): with ``new_per_run == files_per_run`` every
run is new content; with fewer, older files are re-reported with the same identity and the same
values (as the audit's reuse copies them). File ``j`` belongs to group ``groups[j % len(groups)]``
and lives at ``{root}/{group}/f{j:06d}.wav``. A ``shift`` adds ``delta`` to one metric of the files of
one group that first appear in the given runs (new content hit by a recording or encoding bug).
Verdicts follow the EBU R128 preset's loudness, true-peak and clipping rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audioqc import report

GROUPS = ("creatorA", "creatorB", "creatorC")
_RULES = (("loudness_integrated_lufs", "between [-24.0, -22.0]", "Normalise to -23 LUFS (EBU R128)."),
          ("loudness_true_peak_dbtp", "<= -1.0", "Use a true-peak limiter at -1 dBTP."),
          ("clipping_events", "== 0", "Go back to an unclipped master."))


def _values(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-file metric values of n files (their distributions resemble a speech/podcast catalogue)."""
    quality = np.clip(rng.normal(7.0, 1.0, n), 0, 10)
    clipping = np.where(rng.random(n) < 0.05, rng.poisson(20, n), 0).astype(np.int64)
    return {
        "quality_score_average": quality,
        "quality_score_worst_segment_score": np.clip(quality - np.abs(rng.normal(1.5, 0.5, n)), 0, 10),
        "quality_score_worst_segment_start_s": rng.uniform(0, 50, n).round(1),
        "noise_score_average": np.clip(rng.normal(7.5, 1.0, n), 0, 10),
        "noise_score_snr_db": rng.normal(25.0, 5.0, n),
        "loudness_integrated_lufs": rng.normal(-23.0, 1.0, n),
        "loudness_true_peak_dbtp": np.minimum(rng.normal(-3.0, 1.2, n), 0.5),
        "loudness_range_lu": np.maximum(rng.normal(8.0, 2.0, n), 0.5),
        "speech_percentage": rng.uniform(40, 100, n),
        "music_percentage": rng.uniform(0, 30, n),
        "clipping_events": clipping,
        "silence_percentage": np.minimum(rng.exponential(2.0, n), 100),
        "bandwidth_hz": np.minimum(rng.normal(19000, 800, n), 24000),
        "media_info_audio_sample_rate_hz": np.where(rng.random(n) < 0.7, 48000, 44100).astype(np.int64),
        "codec": rng.integers(0, 3, n),
    }


def _reasons(values: dict[str, np.ndarray]) -> tuple[pa.Array, np.ndarray]:
    lufs = values["loudness_integrated_lufs"]
    broken = np.stack([(lufs < -24) | (lufs > -22), values["loudness_true_peak_dbtp"] > -1.0,
                       values["clipping_events"] != 0], axis=1)
    rows, rules = np.nonzero(broken)
    offsets = np.concatenate([[0], np.cumsum(broken.sum(axis=1))]).astype(np.int32)
    metric = np.array([r[0] for r in _RULES], dtype=object)[rules]
    text = np.array([r[1] for r in _RULES], dtype=object)[rules]
    advice = np.array([r[2] for r in _RULES], dtype=object)[rules]
    value = [repr(float(values[m][i])) if m != "clipping_events" else str(int(values[m][i]))
             for m, i in zip(metric, rows, strict=True)]
    given = {"metric": metric, "rule": text, "severity": ["fail"] * len(rows), "advice": advice, "value": value}
    fields = list(report.schema().field("verdict_reasons").type.value_type)  # schema 3 adds "remedy"
    structs = pa.StructArray.from_arrays(
        [pa.array(given[f.name], pa.string()) if f.name in given else pa.nulls(len(rows), f.type) for f in fields],
        fields=fields)
    verdict = np.where(broken.any(axis=1), "fail", "pass").astype(object)
    return pa.ListArray.from_arrays(pa.array(offsets), structs), verdict


def synthetic_history(runs: int = 6, files_per_run: int = 300, **kwargs: Any) -> list[tuple[report.RunInfo, pa.Table]]:
    """Every run of :func:`iter_history` as a list."""
    return list(iter_history(runs, files_per_run, **kwargs))


def iter_history(runs: int = 6, files_per_run: int = 300, *, groups: Sequence[str] = GROUPS,
                      new_per_run: int | None = None, shift: dict[str, Any] | None = None, seed: int = 0,
                      root: str = "/collection", stage: bool = False, remedied: float = 0.0,
                      errors: float = 0.0, start: datetime | None = None) -> Iterator[tuple[report.RunInfo, pa.Table]]:
    """One ``(RunInfo, table)`` per run, oldest first (tables of the report schema). ``stage`` false:
    the stage columns are null, as in reports older than schema 3; true: ``stage == "original"``.

    ``shift``: ``{"group": "creatorB", "metric": "quality_score_average", "delta": -1.5,
    "runs": [runs - 1]}`` (runs default to the last). ``remedied``: share of each run's files that
    get a second, ``stage == "remedied"`` row whose metric values are all ``+100`` (so that any
    leak into an analysis of original rows shows). ``errors``: share of files that are error rows.
    """
    new = files_per_run if new_per_run is None else new_per_run
    total = (runs - 1) * new + files_per_run
    rng = np.random.default_rng(seed)
    values = _values(total, rng)
    ids = np.arange(total)
    group_of = np.array(list(groups), dtype=object)[ids % len(groups)]
    first_run = np.array([_first_run(int(j), new, files_per_run) for j in ids])
    if shift:
        hit_runs = shift.get("runs", [runs - 1])
        hit = (group_of == shift["group"]) & np.isin(first_run, hit_runs)
        values[shift["metric"]] = values[shift["metric"]] + np.where(hit, shift["delta"], 0)
    is_error = rng.random(total) < errors
    start = start or datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)
    codecs = np.array(["pcm_s16le", "aac", "mp3"], dtype=object)
    schema = report.schema()
    for r in range(runs):
        run = report.RunInfo(f"run-{r:03d}", start + timedelta(days=r))
        sel = ids[r * new: r * new + files_per_run]
        yield run, _table(run, sel, values, group_of, codecs, is_error, root, schema, stage, remedied, rng)


def _first_run(j: int, new: int, files: int) -> int:
    """The first run whose window (``[r*new, r*new + files)``) holds file j."""
    if j < files or new == 0:
        return 0
    return (j - files) // new + 1


def _table(run: report.RunInfo, sel: np.ndarray, values: dict[str, np.ndarray], group_of: np.ndarray,
           codecs: np.ndarray, is_error: np.ndarray, root: str, schema: pa.Schema, stage: bool,
           remedied: float, rng: np.random.Generator) -> pa.Table:
    n = len(sel)
    v = {k: a[sel] for k, a in values.items()}
    err = is_error[sel]
    reasons, verdict = _reasons(v)
    urls = [f"{root}/{g}/f{j:06d}.wav" for g, j in zip(group_of[sel], sel, strict=True)]
    cols: dict[str, pa.Array] = {
        "schema_version": pa.array(np.full(n, report.SCHEMA_VERSION, np.int32)),
        "run_id": pa.array([run.run_id] * n, pa.string()),
        "run_time": pa.array([run.run_time] * n, pa.timestamp("us", tz="UTC")),
        "source_url": pa.array(urls, pa.string()),
        "etag": pa.array([None] * n, pa.string()),
        "mtime": pa.array([datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=int(j)) for j in sel],
                          pa.timestamp("us", tz="UTC")),
        "size_bytes": pa.array(1_000_000 + sel.astype(np.int64)),
        "status": pa.array(np.where(err, "error", "ok").astype(object), pa.string()),
        "error": pa.array([f"{u}: corrupt" if e else None for u, e in zip(urls, err, strict=True)], pa.string()),
        "audioqc_version": pa.array(["0.1.0"] * n, pa.string()),
        "analysis_version": pa.array(["synthetic"] * n, pa.string()),
        "verdict": pa.array(np.where(err, np.array(None), verdict), pa.string()),
        "verdict_reasons": pa.array([[] if e else r for e, r in zip(err, reasons.to_pylist(), strict=True)],
                                    schema.field("verdict_reasons").type) if err.any() else reasons,
        "media_info_audio_codec": pa.array(codecs[v["codec"]], pa.string()),
    }
    for name, arr in v.items():
        if name in schema.names and name not in cols:
            typ = schema.field(name).type
            cols[name] = pa.array(np.where(err, None, arr) if err.any() else arr, type=typ, from_pandas=True)
    arrays = [cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
    if stage:
        table = _put(table, "stage", pa.array(["original"] * n, pa.string()))
        k = int(round(remedied * n))
        if k:
            fixed = table.slice(0, k)
            for name in values:
                if name in schema.names and pa.types.is_floating(schema.field(name).type):
                    fixed = _put(fixed, name, pc.add(fixed[name], 100.0))
            fixed = _put(fixed, "stage", pa.array(["remedied"] * k, pa.string()))
            fixed = _put(fixed, "original_url", fixed["source_url"])
            fixed = _put(fixed, "remedies", pa.array([["loudness(target=-23)"]] * k, pa.list_(pa.string())))
            table = pa.concat_tables([table, fixed])
    return table


def _put(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Replace (or, in a schema before 3, append) a column, keeping its field."""
    i = table.schema.get_field_index(name)
    if i < 0:
        return table.append_column(pa.field(name, values.type), values)
    return table.set_column(i, table.schema.field(name), values.cast(table.schema.field(name).type))


def write_history(report_url: str, history: Iterable[tuple[report.RunInfo, pa.Table]], part_rows: int = 256,
                  drop: Sequence[str] = ()) -> None:
    """Write each run's table as parts of ``part_rows`` rows (as the audit does), without ``drop``."""
    for run, table in history:
        if drop:
            table = table.drop_columns([c for c in drop if c in table.column_names])
        for p, offset in enumerate(range(0, table.num_rows, part_rows)):
            report.write_table(table.slice(offset, part_rows), report_url, run, p)
