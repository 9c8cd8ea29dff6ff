"""Reading a QC report back for analysis: only the columns needed, one stage, run manifests.

- :func:`open_report` checks that a URL is a report (``run_date=...`` hive partitions holding
  Parquet parts) and returns it as a pyarrow dataset. The dataset's schema is the current report
  schema (:func:`audioqc.report.schema`) plus the columns of the remedy branch (``stage``,
  ``original_url``, ``remedies``) where the schema does not have them yet: a part written by an
  older schema version reads with its missing columns as null.
- :func:`read` reads a chosen set of columns (Parquet column pruning), the rows of one stage:
  ``original`` (the default: first-pass rows, and rows of reports written before stages existed,
  where ``stage`` is null), ``remedied`` or ``all``.
- Run manifests: ``{report}.audioqc/runs/{run_id}.json`` records the audited root and the policy of a
  run (written by the audit's trends step, :mod:`tasks.trends`). Parquet readers skip names that
  start with ``_`` (pyarrow, pandas) and DuckDB's ``**/*.parquet`` glob does not match them. Where
  a run has no manifest, its root is the longest common folder of its files' URLs.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from audiolib import storage
from audiolib.errors import InvalidParameter, SourceNotFound

from . import report

STAGES = ("original", "remedied", "all")
MANIFEST_DIR = "runs"  # under the report's sidecar folder (audioqc.report.sidecar)


def _sidecar_root(fs: Any, root: str) -> str:
    """The report's sidecar folder as a path of ``fs`` (``root`` is the report's path)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    url = root if protocol in ("file", "local") else f"{protocol}://{root}"
    side = report.sidecar(url)
    return side.split("://", 1)[1] if protocol not in ("file", "local") else side
#: Columns of the remedy branch (issue 15), added to the read schema where report.schema() lacks them.
EXTRA_FIELDS = (pa.field("stage", pa.string()), pa.field("original_url", pa.string()),
                pa.field("remedies", pa.list_(pa.string())))


def _schema() -> pa.Schema:
    schema = report.schema()
    for fld in EXTRA_FIELDS:
        if fld.name not in schema.names:
            schema = schema.append(fld)
    return schema.append(pa.field(report.PARTITION, pa.string()))


def is_report(url: str) -> bool:
    """Whether ``url`` is a directory or prefix with ``run_date=`` partitions."""
    try:
        fs, root = storage.filesystem(url)
        if not fs.isdir(root):
            return False
        return any(posixpath.basename(p.rstrip("/")).startswith(f"{report.PARTITION}=")
                   for p in fs.ls(root, detail=False))
    except (OSError, ValueError):
        return False


def open_report(url: str) -> ds.Dataset:
    """The report at ``url`` as a dataset; :class:`SourceNotFound` if it is not a report or has no rows."""
    try:
        fs, root = storage.filesystem(url)
        if not fs.exists(root):
            raise SourceNotFound(url, "no such report (directory or prefix)")
        if not fs.isdir(root):
            raise SourceNotFound(url, "not a report: a file; give the report's directory "
                                      "(the one holding run_date=YYYY-MM-DD folders)")
        entries = [posixpath.basename(p.rstrip("/")) for p in fs.ls(root, detail=False)]
    except SourceNotFound:
        raise
    except Exception as exc:  # credentials, network: backend-specific exceptions
        raise SourceNotFound(url, f"cannot read: {type(exc).__name__}: {exc}") from None
    partitions = [e for e in entries if e.startswith(f"{report.PARTITION}=")]
    visible = [e for e in entries if not e.startswith((".", "_"))]
    if not partitions:
        if visible:
            raise SourceNotFound(url, "not an audioqc report: no run_date=YYYY-MM-DD folders of Parquet parts")
        raise SourceNotFound(url, "the report has no runs (it is empty)")
    part = ds.partitioning(pa.schema([(report.PARTITION, pa.string())]), flavor="hive")
    try:
        return ds.dataset(root, filesystem=fs, format="parquet", partitioning=part, schema=_schema(),
                          exclude_invalid_files=False, ignore_prefixes=[".", "_"])
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceNotFound(url, f"not an audioqc report: {exc}") from None


def stage_filter(stage: str) -> ds.Expression | None:
    """Rows of ``stage`` (``original`` includes rows without a stage: older reports)."""
    if stage not in STAGES:
        raise InvalidParameter(f"stage={stage!r}: one of {', '.join(STAGES)}")
    if stage == "all":
        return None
    if stage == "original":
        return (ds.field("stage") == "original") | ds.field("stage").is_null()
    return ds.field("stage") == stage


def read(url: str, columns: Sequence[str], *, stage: str = "original", run_ids: Iterable[str] | None = None,
         dataset: ds.Dataset | None = None, cache: bool = True) -> pa.Table:
    """Read ``columns`` of the report's rows of ``stage`` (optionally only ``run_ids``).

    With ``cache`` (the default), runs are read from the run cache (:func:`cached_runs`) where
    it can be built, so that the many small parts of an audit are opened once, not at every read.

    Raises
    ------
    SourceNotFound
        Not a report, no runs, unreadable parts, or (with ``run_ids``) no rows.
    """
    data = dataset if dataset is not None else open_report(url)
    names = set(data.schema.names)
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise InvalidParameter(f"{url}: no column(s) {', '.join(unknown)} in the report schema")
    flt = stage_filter(stage)
    wanted_runs = sorted(set(run_ids)) if run_ids is not None else None
    if wanted_runs is not None:
        wanted = ds.field("run_id").isin(wanted_runs)
        flt = wanted if flt is None else flt & wanted
    columns = list(dict.fromkeys(columns))
    try:
        if cache and all(c in _cache_schema().names for c in columns):
            cached, rest = cached_runs(url, wanted_runs)
            tables = []
            if cached:
                tables.append(_cache_dataset(url, cached).to_table(columns=columns, filter=flt))
            if rest:
                tables.append(_parts_dataset(url, rest).to_table(columns=columns, filter=flt))
            if tables:
                return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            return data.to_table(columns=columns, filter=flt)
        return data.to_table(columns=columns, filter=flt)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise SourceNotFound(url, f"not an audioqc report (a part cannot be read): {exc}") from None


# ----------------------------------------------------------------------------------------------
# the run cache


CACHE_DIR = "cache"  # under the report's sidecar folder
#: Not ``.parquet``: a ``**/*.parquet`` glob (DuckDB's hive reading) must not take a cache file
#: for a part of the report.
CACHE_SUFFIX = ".pqcache"


#: Columns kept in the run cache: provenance, stage, verdict and reasons, the group keys, the
#: watched metrics and what the plots and comparisons show. A read of any other column goes to
#: the parts themselves.
CACHE_COLUMNS = (
    "run_id", "run_time", "source_url", "etag", "mtime", "size_bytes", "status", "error", "verdict",
    "verdict_reasons", "stage", "original_url", "media_info_audio_codec", "media_info_audio_sample_rate_hz",
    "media_info_audio_duration_s", "quality_score_average", "quality_score_worst_segment_score",
    "quality_score_worst_segment_start_s", "quality_score_worst_segment_end_s", "noise_score_average",
    "noise_score_snr_db", "loudness_integrated_lufs", "loudness_true_peak_dbtp", "loudness_range_lu",
    "loudness_speech_integrated_lufs", "speech_percentage", "music_percentage", "clipping_events",
    "silence_percentage", "bandwidth_hz", "dropouts_count", report.PARTITION,
)


def _cache_schema() -> pa.Schema:
    """The cached columns (:data:`CACHE_COLUMNS`) with their report types."""
    schema = _schema()
    return pa.schema([schema.field(c) for c in CACHE_COLUMNS if c in schema.names])


def _cache_dir(fs: Any, root: str) -> str:
    import hashlib

    digest = hashlib.sha1(_cache_schema().to_string().encode()).hexdigest()[:10]
    return f"{_sidecar_root(fs, root)}/{CACHE_DIR}/runs-{digest}"


def _run_of_part(name: str) -> str | None:
    """The run id in an audit part's name (:func:`audioqc.report.parse_part_name`)."""
    parsed = report.parse_part_name(name)
    return parsed[0] if parsed else None


def cached_runs(url: str, run_ids: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """Cache files for the report's runs (built where missing or out of date) and the parts that
    could not be cached.

    A run's cache file is one Parquet file of :func:`_cache_schema`'s columns in
    ``{report}.audioqc/cache/runs-{schema digest}/``, named by the run id and a digest of the names and
    sizes of the run's parts (``RUN.DIGEST.pqcache``: not ``.parquet``, which DuckDB's
    ``**/*.parquet`` glob would take for a part), so that a run resumed later is cached again. The
    audit writes parts atomically, so a visible part is complete. Parts whose names do not carry a
    run id, and runs whose cache cannot be written (a read-only report), are returned as parts
    to read directly.
    """
    import hashlib

    fs, root = storage.filesystem(url)
    root = root.rstrip("/")
    by_run: dict[str, list[tuple[str, int]]] = {}
    loose: list[str] = []
    for path, info in fs.find(root, detail=True).items():
        rel = path[len(root):].lstrip("/")
        top = rel.split("/", 1)[0]
        name = rel.rsplit("/", 1)[-1]
        if not top.startswith(f"{report.PARTITION}=") or name.startswith((".", "_")) or not name.endswith(".parquet"):
            continue
        run = _run_of_part(name)
        if run is None:
            loose.append(path)
        elif run_ids is None or run in run_ids:
            by_run.setdefault(run, []).append((path, int(info.get("size") or 0)))
    directory = _cache_dir(fs, root)
    try:
        existing = {p.rsplit("/", 1)[-1] for p in fs.ls(directory, detail=False)}
    except (FileNotFoundError, OSError):
        existing = set()
    cached: list[str] = []
    missing: list[tuple[str, str, list[str]]] = []
    for run, parts in sorted(by_run.items()):
        signature = "\n".join(f"{p.rsplit('/', 1)[-1]}:{n}" for p, n in sorted(parts))
        name = f"{run}.{hashlib.sha1(signature.encode()).hexdigest()[:12]}{CACHE_SUFFIX}"
        if name in existing:
            cached.append(f"{directory}/{name}")
        else:
            missing.append((run, f"{directory}/{name}", [p for p, _ in parts]))

    def build(item: tuple[str, str, list[str]]) -> tuple[str | None, list[str]]:
        run, target, paths = item
        try:
            _build_cache(fs, url, target, paths, directory, existing, run)
            return target, []
        except OSError:  # a read-only report: read its parts directly
            return None, paths

    if missing:
        from concurrent.futures import ThreadPoolExecutor

        # several runs at a time: a run's parts are small, and opening each costs more than reading it
        with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            for target, paths in pool.map(build, missing):
                if target:
                    cached.append(target)
                loose += paths
    return cached, loose


def _build_cache(fs: Any, url: str, target: str, parts: list[str], directory: str, existing: set[str],
                 run: str) -> None:
    schema = _cache_schema()
    table = _parts_dataset(url, parts).to_table(columns=schema.names).cast(schema)
    fs.makedirs(directory, exist_ok=True)
    report.put_parquet(fs, table, target)
    for old in existing:  # the run's earlier cache file (before it was resumed)
        if old.startswith(f"{run}.") and old.endswith(CACHE_SUFFIX) and old[len(run) + 1:].count(".") == 1:
            try:
                fs.rm(f"{directory}/{old}")
            except OSError:
                pass


def _parts_dataset(url: str, paths: list[str]) -> ds.Dataset:
    fs, root = storage.filesystem(url)
    part = ds.partitioning(pa.schema([(report.PARTITION, pa.string())]), flavor="hive")
    return ds.dataset(paths, filesystem=fs, format="parquet", partitioning=part, schema=_schema(),
                      partition_base_dir=root.rstrip("/"), exclude_invalid_files=False)


def _cache_dataset(url: str, paths: list[str]) -> ds.Dataset:
    fs, _ = storage.filesystem(url)
    return ds.dataset(paths, filesystem=fs, format="parquet", schema=_cache_schema(), exclude_invalid_files=False)


def runs(url: str, *, stage: str = "original", dataset: ds.Dataset | None = None) -> list[dict[str, Any]]:
    """The report's runs, oldest first: ``run_id``, ``run_time`` (its first row's), ``run_date``, ``rows``."""
    import pyarrow.compute as pc

    table = read(url, ["run_id", "run_time", report.PARTITION], stage=stage, dataset=dataset)
    if table.num_rows == 0:
        raise SourceNotFound(url, "the report has no runs" + ("" if stage == "all" else f" (of stage {stage!r})"))
    grouped = table.group_by("run_id").aggregate([("run_time", "min"), ("run_time", "count"),
                                                  (report.PARTITION, "min")])
    order = pc.sort_indices(grouped, sort_keys=[("run_time_min", "ascending"), ("run_id", "ascending")])
    grouped = grouped.take(order)
    return [{"run_id": r["run_id"], "run_time": r["run_time_min"], "run_date": r[f"{report.PARTITION}_min"],
             "rows": r["run_time_count"]} for r in grouped.to_pylist()]


# ----------------------------------------------------------------------------------------------
# roots and relative paths


def collection_root(source: str) -> str:
    """The root as the audit writes its files' URLs (``tasks.storage.list_objects``): an absolute
    path for local sources, the full URL for remote ones."""
    fs, root = storage.filesystem(source)
    root = root.rstrip("/")
    return fs.unstrip_protocol(root) if "://" in source else root


def common_root(urls: Iterable[str]) -> str:
    """The longest common folder of URLs (never a file name)."""
    prefix: list[str] | None = None
    for url in urls:
        parts = url.split("/")[:-1]
        if prefix is None:
            prefix = parts
            continue
        n = 0
        for a, b in zip(prefix, parts, strict=False):
            if a != b:
                break
            n += 1
        prefix = prefix[:n]
        if not prefix:
            break
    return "/".join(prefix or [])


def relative(url: str, root: str) -> str:
    """``url`` relative to ``root`` (unchanged where it is not under it)."""
    if root and url.startswith(root.rstrip("/") + "/"):
        return url[len(root.rstrip("/")) + 1:]
    return url


def first_folder(rel: str) -> str:
    """The first folder of a relative path; ``(root)`` for a file directly under the root."""
    return rel.split("/", 1)[0] if "/" in rel else "(root)"


# ----------------------------------------------------------------------------------------------
# run manifests


def write_manifest(report_url: str, run_id: str, **fields: Any) -> str:
    """Write ``{report}.audioqc/runs/{run_id}.json`` (fields: ``source``, ``root``, ``policy``, ...)."""
    fs, root = storage.filesystem(report_url)
    directory = f"{_sidecar_root(fs, root)}/{MANIFEST_DIR}"
    fs.makedirs(directory, exist_ok=True)
    path = f"{directory}/{run_id}.json"
    fs.pipe_file(path, json.dumps({"run_id": run_id, **fields}, default=str, indent=1).encode())
    return path


def read_manifests(report_url: str) -> dict[str, dict[str, Any]]:
    """Every run manifest of the report, by run id (empty when there are none)."""
    fs, root = storage.filesystem(report_url)
    directory = f"{_sidecar_root(fs, root)}/{MANIFEST_DIR}"
    out: dict[str, dict[str, Any]] = {}
    try:
        paths = [p for p in fs.ls(directory, detail=False) if p.endswith(".json")]
    except (FileNotFoundError, OSError):
        return out
    for path in paths:
        try:
            data = json.loads(fs.cat_file(path))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("run_id"), str):
            out[data["run_id"]] = data
    return out
