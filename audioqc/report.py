"""The Parquet QC report: the one module that owns its schema.

One row per file per audit run. The schema is explicit (a ``pyarrow.Schema`` with a
``schema_version``), and derived, not hand-copied, from the typed frozen dataclasses the analyzers
return (:data:`audiolib.diagnose.RESULT_TYPES`): a new diagnose block appears in the report without
any change to the pipeline.

Columns
-------
- provenance: ``schema_version``, ``run_id``, ``run_time`` (UTC), ``source_url``, ``etag``,
  ``mtime`` (UTC), ``size_bytes``, ``status`` (``ok``/``error``), ``error``, ``audioqc_version``,
  ``analysis_version``;
- the policy verdict: ``verdict`` (``pass``/``warn``/``fail``, null without a policy) and
  ``verdict_reasons`` (a list of ``{metric, rule, severity, advice, value, remedy}``);
- the remedy branch: ``stage`` (``original``; ``remedied`` for a file fixed by the policy's
  remedies and diagnosed again), ``original_url`` (the file it was made from) and ``remedies``
  (what was applied, as text: ``denoise(amount=100)``); null in reports older than schema 3;
- metrics: every field of every block's result, named ``{block}_{field}`` with the field's own
  units (``loudness_integrated_lufs``, ``loudness_true_peak_dbtp``, ``clipping_events``,
  ``silence_percentage``, ``media_info_audio_sample_rate_hz``, ...). A nested result object is
  flattened with its name as a prefix (``phase_front_correlation``); lists of result objects are
  nested ``list<struct>`` columns (silence sections, format segments); ``dict`` fields are
  ``map<string, ...>`` columns; anything untyped is stored as JSON text.
- ``run_date`` (``YYYY-MM-DD``) is the hive partition key of the dataset directory.

Writes are atomic: on a local filesystem a part file is written under a hidden temporary name and
renamed into place; on object storage a single PUT is atomic and nothing temporary is created.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from audiolib import ANALYSIS_VERSION, __version__, storage
from audiolib.diagnose import RESULT_TYPES, DiagnoseResult

SCHEMA_VERSION = 3  # 2: perceptual blocks; 3: remedies (stage, original_url, remedies, reasons' remedy)
PARTITION = "run_date"

_REASON = pa.struct([("metric", pa.string()), ("rule", pa.string()), ("severity", pa.string()),
                     ("advice", pa.string()), ("value", pa.string()), ("remedy", pa.string())])
#: Keys of one policy reason, as the ``verdict_reasons`` column holds them (audioqc.policy uses them).
REASON_KEYS: tuple[str, ...] = tuple(f.name for f in _REASON)
#: ``stage`` of a first-pass row and of the row of a file remedied and diagnosed again.
STAGES = ("original", "remedied")
PROVENANCE_FIELDS: list[pa.Field] = [
    pa.field("schema_version", pa.int32(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("run_time", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("source_url", pa.string(), nullable=False),
    pa.field("etag", pa.string()),
    pa.field("mtime", pa.timestamp("us", tz="UTC")),
    pa.field("size_bytes", pa.int64()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("audioqc_version", pa.string(), nullable=False),
    pa.field("analysis_version", pa.string(), nullable=False),
    pa.field("verdict", pa.string()),
    pa.field("verdict_reasons", pa.list_(_REASON)),
    # the remedy branch (schema 3; null in older reports, where every row is an original)
    pa.field("stage", pa.string()),
    pa.field("original_url", pa.string()),
    pa.field("remedies", pa.list_(pa.string())),
]
#: Fields of result classes that say how a value was computed rather than what was measured.
_SKIP_FIELDS = {("media_info", "url")}


# ----------------------------------------------------------------------------------------------
# schema from type hints


def _unwrap_optional(hint: Any) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else Any
    return hint


def _is_result_class(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _members(cls: type) -> list[tuple[str, Any]]:
    """(name, type hint) of a result class's dataclass fields and of the properties it declares
    as columns (``REPORT_PROPERTIES``): a new property is not a new column unless it says so."""
    hints = typing.get_type_hints(cls)
    out = [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]
    for name in sorted(getattr(cls, "REPORT_PROPERTIES", ())):
        attr = getattr(cls, name, None)
        ret = typing.get_type_hints(attr.fget).get("return") if isinstance(attr, property) else None
        if ret is None:
            raise TypeError(f"{cls.__name__}.REPORT_PROPERTIES names {name!r}, not a property with a return type")
        out.append((name, ret))
    return out


def arrow_type(hint: Any) -> pa.DataType:
    """The Arrow type for a Python type hint of a result field."""
    hint = _unwrap_optional(hint)
    origin = typing.get_origin(hint)
    if hint is bool:
        return pa.bool_()
    if hint is int:
        return pa.int64()
    if hint is float:
        return pa.float64()
    if hint is str:
        return pa.string()
    if _is_result_class(hint):
        return pa.struct([pa.field(n, arrow_type(h)) for n, h in _members(hint)])
    if origin in (tuple, list, Sequence):
        args = typing.get_args(hint)
        return pa.list_(arrow_type(args[0] if args else Any))
    if origin in (dict, Mapping):
        key, value = typing.get_args(hint) or (str, Any)
        return pa.map_(arrow_type(key), arrow_type(value))
    return pa.string()  # Any and the like: JSON text


def _block_fields(block: str, cls: type, prefix: str) -> list[tuple[pa.Field, tuple[str, ...]]]:
    out: list[tuple[pa.Field, tuple[str, ...]]] = []
    for name, hint in _members(cls):
        if (block, name) in _SKIP_FIELDS:
            continue
        inner = _unwrap_optional(hint)
        # ``loudness_range_lu`` of block ``loudness`` is ``loudness_range_lu``, not
        # ``loudness_loudness_range_lu``.
        column = name if prefix == block and (name == block or name.startswith(block + "_")) else f"{prefix}_{name}"
        if _is_result_class(inner):  # a single nested result: flatten with a prefix
            out += [(f, (name, *path)) for f, path in _block_fields(block, inner, column)]
        else:
            out.append((pa.field(column, arrow_type(hint)), (name,)))
    return out


@lru_cache(maxsize=1)
def _metric_layout() -> tuple[tuple[str, pa.Field, tuple[str, ...]], ...]:
    layout = []
    for block, cls in RESULT_TYPES.items():
        for fld, path in _block_fields(block, cls, block):
            layout.append((block, fld, path))
    return tuple(layout)


def metric_columns() -> list[str]:
    """Every metric column name (what a QC policy may refer to)."""
    return [fld.name for _, fld, _ in _metric_layout()]


def metric_type(column: str) -> pa.DataType:
    """Arrow type of a metric column (``KeyError`` for an unknown name)."""
    for _, fld, _ in _metric_layout():
        if fld.name == column:
            return fld.type
    raise KeyError(column)


def schema_fingerprint() -> str:
    """SHA-256 of the schema's column names and types: tests/golden/versions.json holds it with
    SCHEMA_VERSION, and a test fails when the schema changes without a version bump."""
    import hashlib

    text = "\n".join(f"{f.name}: {f.type}" for f in schema())
    return hashlib.sha256(text.encode()).hexdigest()


def schema() -> pa.Schema:
    """The report schema (without the ``run_date`` partition column)."""
    fields = list(PROVENANCE_FIELDS) + [fld for _, fld, _ in _metric_layout()]
    return pa.schema(fields, metadata={b"audioqc_schema_version": str(SCHEMA_VERSION).encode()})


# ----------------------------------------------------------------------------------------------
# rows


def _plain(value: Any, dtype: pa.DataType) -> Any:
    """A result value converted to what pyarrow expects for ``dtype``."""
    if value is None:
        return None
    if pa.types.is_struct(dtype):
        return {f.name: _plain(getattr(value, f.name, None), f.type) for f in dtype}
    if pa.types.is_list(dtype):
        return [_plain(v, dtype.value_type) for v in value]
    if pa.types.is_map(dtype):
        return [(k, _plain(v, dtype.item_type)) for k, v in value.items()]
    if pa.types.is_string(dtype) and not isinstance(value, str):
        return json.dumps(value, default=str, allow_nan=False) if _finite(value) else None
    if pa.types.is_floating(dtype):
        value = float(value)
        return value if math.isfinite(value) else None
    if pa.types.is_integer(dtype):
        return int(value)
    return value


def _finite(value: Any) -> bool:
    try:
        json.dumps(value, default=str, allow_nan=False)
        return True
    except ValueError:
        return False


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        if obj is None:
            return None
        obj = getattr(obj, name)
    return obj


def flatten(result: DiagnoseResult) -> dict[str, Any]:
    """Metric columns of one diagnose result (blocks not computed are null)."""
    row: dict[str, Any] = {}
    objects = {"media_info": result.media_info, **result.blocks}
    for block, fld, path in _metric_layout():
        obj = objects.get(block)
        row[fld.name] = None if obj is None else _plain(_get(obj, path), fld.type)
    return row


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """Identity of one audit run."""

    run_id: str
    run_time: datetime

    @classmethod
    def new(cls, run_id: str | None = None) -> RunInfo:
        return cls(run_id or uuid.uuid4().hex[:16], datetime.now(timezone.utc))

    @property
    def run_date(self) -> str:
        return self.run_time.strftime("%Y-%m-%d")


def format_reasons(reasons: Iterable[Mapping[str, Any]]) -> list[dict[str, str | None]]:
    """Policy reasons as the ``verdict_reasons`` column holds them (text; values as JSON)."""
    out = []
    for r in reasons:
        item: dict[str, str | None] = {}
        for key in REASON_KEYS:
            value = r.get(key)
            if value is None or isinstance(value, str):
                item[key] = value
            else:
                item[key] = json.dumps(value, default=str) if _finite(value) else None
        out.append(item)
    return out


def make_row(run: RunInfo, source_url: str, *, etag: str | None, mtime: datetime | None,
             size_bytes: int | None, result: DiagnoseResult | None = None, error: str | None = None,
             verdict: str | None = None, reasons: Iterable[Mapping[str, Any]] = (),
             stage: str = "original", original_url: str | None = None,
             remedies: Sequence[str] | None = None) -> dict[str, Any]:
    """One report row: provenance, verdict and (for ``status == "ok"``) every metric.

    ``stage`` is ``original`` for a file of the collection, ``remedied`` for the file a remedy made
    of ``original_url`` (with the ``remedies`` applied, as text)."""
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r}: one of {STAGES}")
    metrics = flatten(result) if result is not None else dict.fromkeys(metric_columns())
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run.run_id,
        "run_time": run.run_time,
        "source_url": source_url,
        "etag": etag,
        "mtime": mtime,
        "size_bytes": size_bytes,
        "status": "ok" if error is None else "error",
        "error": error,
        "audioqc_version": __version__,
        "analysis_version": ANALYSIS_VERSION,
        "verdict": verdict,
        "verdict_reasons": format_reasons(reasons),
        "stage": stage,
        "original_url": original_url,
        "remedies": list(remedies) if remedies is not None else None,
        **metrics,
    }


# ----------------------------------------------------------------------------------------------
# writing and reading


def write_rows(rows: Sequence[Mapping[str, Any]], report_url: str, run: RunInfo, part: int) -> str:
    """Write rows as one Parquet part of the dataset at ``report_url``; returns its path.

    The part lands at ``{report_url}/run_date=YYYY-MM-DD/part-{run_id}-{part:06d}.parquet``,
    atomically (see the module docstring). Writing the same part again replaces it.
    """
    return write_table(rows_to_table(rows), report_url, run, part)


def rows_to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows as a table of the report schema."""
    return pa.Table.from_pylist(list(rows), schema=schema())


def write_table(table: pa.Table, report_url: str, run: RunInfo, part: int) -> str:
    """Write a table of report rows as one part (see :func:`write_rows`).

    Local: written under a temporary name in the report's sidecar folder (outside the dataset,
    same filesystem: no reader ever globs it) and renamed into place. Object storage: one PUT of
    the finished bytes, and no ``makedirs`` (which would create a missing bucket: a missing or
    deleted bucket is an error, never silently made again).
    """
    fs, root = storage.filesystem(report_url)
    directory = f"{root.rstrip('/')}/{PARTITION}={run.run_date}"
    name = part_name(run.run_id, part)
    final = f"{directory}/{name}"
    if _is_local(fs):
        os.makedirs(directory, exist_ok=True)
        put_parquet(fs, table, final, temporary_dir(report_url))
    else:
        try:
            put_parquet(fs, table, final)
        except Exception as exc:  # a deleted bucket, denied, throttled: typed, transient or not
            raise storage.remote_error(f"{report_url.rstrip('/')}/{PARTITION}={run.run_date}/{name}", exc,
                                       doing="write the report part") from None
    return final


def put_parquet(fs: Any, table: pa.Table, final: str, scratch: str | None = None) -> None:
    """``table`` as the Parquet file ``final``, whole or not at all: on a local filesystem written
    under a temporary name in ``scratch`` (a folder on the same filesystem, default ``final``'s)
    and renamed into place; on object storage one PUT of the finished bytes. Errors propagate."""
    if _is_local(fs):
        scratch = scratch or os.path.dirname(final)
        os.makedirs(scratch, exist_ok=True)
        tmp = os.path.join(scratch, f"{os.path.basename(final)}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:  # object storage: one PUT of the finished bytes is atomic
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        fs.pipe_file(final, sink.getvalue().to_pybytes())


def part_name(run_id: str, part: int) -> str:
    """The file name of part ``part`` of run ``run_id``: ``part-{run_id}-{part:06d}.parquet``."""
    return f"part-{run_id}-{part:06d}.parquet"


def parse_part_name(name: str) -> tuple[str, int] | None:
    """``(run_id, part)`` of a part's file name (or path) as :func:`part_name` makes it; None for
    any other name (a temporary, a sidecar file)."""
    name = name.rsplit("/", 1)[-1]
    if not (name.startswith("part-") and name.endswith(".parquet")):
        return None
    run, _, number = name[len("part-"):-len(".parquet")].rpartition("-")
    return (run, int(number)) if run and number.isdigit() else None


def temporary_dir(report_url: str) -> str:
    """Where a local report's parts are written before they are renamed into place."""
    path = sidecar(report_url, "tmp")
    return path[len("file://"):] if path.startswith("file://") else path


def remove_stale_temporaries(report_url: str, run_id: str) -> int:
    """Delete the temporaries a killed run ``run_id`` left (local reports; an object store has
    none: a PUT is whole or absent). Returns how many."""
    if not storage.is_local(report_url):
        return 0
    scratch = temporary_dir(report_url)
    removed = 0
    try:
        names = os.listdir(scratch)
    except OSError:
        return 0
    for name in names:
        # a temporary is a part's name, a random suffix and .tmp (write_table)
        parsed = parse_part_name(name.split(".parquet.", 1)[0] + ".parquet") if name.endswith(".tmp") else None
        if parsed is not None and parsed[0] == run_id:
            try:
                os.remove(os.path.join(scratch, name))
                removed += 1
            except OSError:
                pass
    return removed


#: The folder beside a report (``<report>.audioqc``) for everything that is not one of its Parquet
#: parts: parts being written, run manifests, the trends cache and HTML. Outside the dataset folder,
#: so that every reader's glob over the report (DuckDB's ``report/**`` included) sees parts only.
SIDECAR_SUFFIX = ".audioqc"


def sidecar(report_url: str, *names: str) -> str:
    """``<report>.audioqc/<names...>``: see :data:`SIDECAR_SUFFIX`. A report at the root of a
    bucket keeps it inside, under ``.audioqc/`` (a bucket's root has no sibling)."""
    base = report_url.rstrip("/")
    _scheme, _, rest = base.partition("://")
    if rest and "/" not in rest:  # s3://bucket: the bucket's own root
        base = f"{base}/.audioqc"
    else:
        base = f"{base}{SIDECAR_SUFFIX}"
    return "/".join([base, *names]) if names else base


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def dataset(report_url: str) -> ds.Dataset:
    """The report as one pyarrow dataset (all runs; ``run_date`` from the hive partition)."""
    fs, root = storage.filesystem(report_url)
    part = ds.partitioning(pa.schema([(PARTITION, pa.string())]), flavor="hive")
    return ds.dataset(root, filesystem=fs, format="parquet", partitioning=part,
                      schema=schema().append(pa.field(PARTITION, pa.string())),
                      exclude_invalid_files=False, ignore_prefixes=[".", "_"])


def read_report(report_url: str, *, columns: Sequence[str] | None = None, run_id: str | None = None) -> pa.Table:
    """Read the report (optionally one run's rows) as a table."""
    data = dataset(report_url)
    flt = ds.field("run_id") == run_id if run_id is not None else None
    return data.to_table(columns=list(columns) if columns else None, filter=flt)
