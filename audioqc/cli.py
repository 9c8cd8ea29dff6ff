"""The ``audioqc`` command.

Results go to stdout as strict JSON. Errors: one line on stderr naming the input and the problem,
exit 1 (2 for usage errors), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from audiolib import __version__
from audiolib.errors import AudioQCError

from .jsonout import dumps

PROG = "audioqc"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # usage errors: one line + exit 2
        self.exit(2, f"{self.prog}: usage error: {message} (see '{self.prog} --help')\n")


def _int_at_least(text: str, minimum: int) -> int:
    """An option's integer, at least ``minimum``; else argparse's usage error quoting it."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= {minimum}")
    return value


def _nonneg_int(text: str) -> int:
    return _int_at_least(text, 0)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Audio quality control: media info, loudness, diagnostics.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add_common(p: argparse.ArgumentParser, *, ranged: bool = True) -> None:
        p.add_argument("--stream", type=_nonneg_int, default=None, metavar="N",
                       help="audio stream to use, 0-based among audio streams (default: the default stream)")
        if ranged:
            p.add_argument("--start", default=None, metavar="T", help="start time (seconds or HH:MM:SS.ms)")
            p.add_argument("--end", default=None, metavar="T", help="end time (seconds or HH:MM:SS.ms)")

    p = sub.add_parser("info", help="print media_info (headers only)")
    p.add_argument("url", help="local path or fsspec URL (s3://, http(s)://, file://)")
    add_common(p, ranged=False)

    p = sub.add_parser("loudness", help="BS.1770-4 / EBU R128 loudness block")
    p.add_argument("url")
    add_common(p)
    p.add_argument("--sami", action="store_true",
                   help='print SAMI LoudnessDetect\'s {"loudness": LUFS or -100, "peak": linear}')
    p.add_argument("--gating", choices=["level", "speech"], default="level",
                   help="level (BS.1770) or speech (dialogue-gated: loudness of the speech only); default level")

    p = sub.add_parser("silence", help="silence intervals, FFmpeg silencedetect semantics (the silence endpoint)")
    p.add_argument("url")
    add_common(p)
    p.add_argument("--noise", default="-30dB", help="threshold, e.g. -30dB (default -30dB)")
    p.add_argument("--duration", required=True, type=float, metavar="S",
                   help="minimum silence duration in seconds (>= 0.1)")
    p.add_argument("--mono", action=argparse.BooleanOptionalAction, default=True,
                   help="detect on the channel average (default) or, with --no-mono, where every channel is silent")
    p.add_argument("--channels", action="store_true",
                   help="with --no-mono, also print each channel's intervals: "
                        "{\"silence\": [...], \"channels\": {...}}")

    p = sub.add_parser("format", help="channel format over time, compressed audio, alarms (Audio Format)")
    p.add_argument("url")
    add_common(p)
    p.add_argument("--compressed-channels", default="", metavar="0,1",
                   help="channels on which compressed (ST 337) audio is allowed")
    p.add_argument("--alarms", default=None, metavar="FILE.json",
                   help="alarmSettings JSON (sensitivity, secsInAlarmDuration, allowCompressedAudio, "
                        "allowableAudioFormat, enabled)")

    p = sub.add_parser("audit", help="audit a collection into a Parquet QC report (Prefect flow)")
    p.add_argument("source", help="directory or fsspec URL (s3://bucket/prefix), listed recursively")
    p.add_argument("--report", required=True, metavar="DEST", help="report dataset URL (directory or s3://...)")
    p.add_argument("--policy", default=None, metavar="NAME|PATH", help="QC policy preset or YAML file")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="worker processes (default 2)")
    p.add_argument("--dask", default=None, metavar="ADDRESS", help="run on this Dask scheduler instead")
    p.add_argument("--include", action="append", default=None, metavar="GLOB",
                   help="only these files (default: media extensions); repeatable")
    p.add_argument("--exclude", action="append", default=None, metavar="GLOB", help="skip these files; repeatable")
    p.add_argument("--batch-size", type=int, default=32, metavar="N",
                   help="files per task (default 32: per-task overhead is ~0.4 s, see benchmarks/bench_audit.py)")
    p.add_argument("--part-rows", type=int, default=256, metavar="N",
                   help="rows per report part file (default 256); a killed run loses at most these")
    p.add_argument("--run-id", default=None, metavar="ID", help="resume the run with this id (or name a new run)")
    p.add_argument("--no-reuse", dest="reuse", action="store_false",
                   help="analyse every file even if unchanged since an earlier run")
    p.add_argument("--verbose", action="store_true", help="show Prefect's logs")
    p.add_argument("--create-report-bucket", action="store_true",
                   help="create the report's bucket if it does not exist (otherwise a missing bucket is an error)")
    p.add_argument("--temporary-server", action="store_true",
                   help="never start the background Prefect server: without one running (or PREFECT_API_URL), "
                        "a temporary server that stops with the audit (also AUDIOQC_PREFECT_SERVER=temporary)")
    p.add_argument("--remedy-to", default=None, metavar="PREFIX",
                   help="fix failing files with the policy's remedies (denoise, loudness) into PREFIX (same relative "
                        "paths), then diagnose them again: a second report row, stage=remedied")
    p.add_argument("--trends", action="store_true",
                   help="end with the report's trends: alerts and summary as Prefect artifacts, the HTML report "
                        "written under DEST.audioqc/trends/, the flow run tagged 'trends-alert' on an alert")

    p = sub.add_parser("server", help="a Prefect server that keeps running between audits (an audit starts it "
                                      "on first use): start, stop, status (docs/audit-speed.md)")
    p.add_argument("action", choices=["start", "stop", "status"],
                   help="start: in the background, until 'stop' (audits record their runs there); status: what runs")
    p.add_argument("--host", default="127.0.0.1", help="start: address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=4200, help="start: port (default 4200, Prefect's)")
    p.add_argument("--timeout", type=float, default=90.0, metavar="S",
                   help="start: seconds to wait for the server to answer (default 90)")
    p.add_argument("--idle-minutes", type=float, default=0.0, metavar="N",
                   help="start: stop by itself after N minutes without an audit (default 0: keep running until "
                        "'stop'; a server an audit starts on first use stops after AUDIOQC_SERVER_IDLE_MINUTES, "
                        "default 15)")

    p = sub.add_parser("trends", help="trends over a report's runs; alerts on systemic drops (docs/trends.md)")
    p.add_argument("report", help="report dataset URL (directory or s3://...)")
    p.add_argument("--json", action="store_true", help='print {"runs": [...], "groups": [...], "alerts": [...]}')
    p.add_argument("--html", default=None, metavar="FILE", help="write a self-contained HTML report (path or URL)")
    p.add_argument("--png", default=None, metavar="DIR", help="write the plots as PNG files into DIR")
    p.add_argument("--group-by", default=None, choices=["prefix", "codec", "sample_rate", "policy", "verdict"],
                   help="split every figure: prefix (first folder under the audited root), codec, sample_rate, "
                        "policy or verdict")
    p.add_argument("--by", default="run", choices=["run", "ingest"],
                   help="run: every file of each run (default); ingest: each file only in the run in which its "
                        "identity first appeared (new or changed content)")
    p.add_argument("--baseline-runs", type=int, default=5, metavar="N",
                   help="compare the latest run with each group's previous N runs (default 5)")
    p.add_argument("--fail-on-alert", action="store_true", help="exit 3 when there is an alert")
    p.add_argument("--margin", action="append", nargs="+", default=None, metavar="METRIC:VALUE",
                   help="practical margin of a metric, overriding the default (docs/trends.md); repeatable")
    p.add_argument("--alpha", type=float, default=0.01, metavar="A",
                   help="false-alarm rate per group, Holm-corrected across metrics (default 0.01)")
    p.add_argument("--stage", default="original", choices=["original", "remedied", "all"],
                   help="report rows to use: original (default; includes reports without stages), remedied, all")
    p.add_argument("--root", default=None, metavar="URL",
                   help="the audited root for --group-by prefix (default: the run's manifest, else the common folder)")
    p.add_argument("--policy", default=None, metavar="NAME|PATH",
                   help="policy whose loudness window and true-peak limit the plots draw (default: the run's)")

    p = sub.add_parser("compare", help="A/B comparison of two audits, file by file; non-inferiority gates for CI")
    p.add_argument("baseline", help="report URL (URL#run_id; default: its latest run) or a collection to audit")
    p.add_argument("candidate", help="report URL (URL#run_id) or a collection to audit")
    p.add_argument("--gate", action="append", nargs="+", default=None, metavar="METRIC:MARGIN",
                   help="non-inferiority margin: quality_score_average:-0.3 (may be lower by at most 0.3), "
                        "METRIC:+M (higher by at most M), METRIC:M (two-sided); repeatable")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--html", default=None, metavar="FILE", help="write a self-contained HTML report (path or URL)")
    p.add_argument("--png", default=None, metavar="DIR", help="write the plots as PNG files into DIR")
    p.add_argument("--markdown", default=None, metavar="FILE", help="write the markdown summary (for a pull request)")
    p.add_argument("--policy", default=None, metavar="NAME|PATH", help="policy for collections audited on the fly")
    p.add_argument("--stage", default="original", choices=["original", "remedied", "all"],
                   help="report rows to use (default original)")
    p.add_argument("--pair-by", default="path", choices=["path", "stem"],
                   help="pair files by relative path (default) or by path without extension (a codec change)")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="workers for collections audited on the fly")
    p.add_argument("--verbose", action="store_true", help="show Prefect's logs of on-the-fly audits")

    p = sub.add_parser("denoise", help="remove noise from speech (DeepFilterNet3); any format out, video kept")
    p.add_argument("input", help="local path or fsspec URL")
    p.add_argument("output", help="local path, fsspec URL or presigned https:// PUT URL (written atomically)")
    p.add_argument("--amount", default="100", metavar="N",
                   help="noise reduction 1..100: at most N dB removed anywhere, 100 = full (default)")
    p.add_argument("--format", default=None, metavar="EXT",
                   help="output format (wav, flac, mp3, m4a, aac, opus, ogg, mka, mkv, webm, mp4, mov); "
                        "default: the output's extension")
    p.add_argument("--stream", type=_nonneg_int, default=None, metavar="N",
                   help="audio stream to denoise, 0-based among audio streams (default: the default stream)")

    p = sub.add_parser("serve", help="HTTP service: the five hosted APIs on this engine (docs/service.md)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="analysis worker processes (default: one per core)")
    p.add_argument("--data-dir", default="audioqc-data", metavar="DIR",
                   help="job database, uploads, inputs and outputs (default ./audioqc-data); jobs survive restarts")
    p.add_argument("--key-file", default=None, metavar="FILE",
                   help="API keys, one a line (also AUDIOQC_API_KEYS, comma-separated)")
    p.add_argument("--max-queue", type=int, default=64, metavar="N",
                   help="unfinished jobs at most (MAX_QUEUE_LENGTH); one more is refused with 429 (default 64)")
    p.add_argument("--max-upload-mb", type=float, default=512, metavar="MB",
                   help="largest upload, download or base64 data, MiB; 413 beyond (default 512)")
    p.add_argument("--download-timeout", type=float, default=300, metavar="S",
                   help="longest download of a URL input, seconds (default 300)")
    p.add_argument("--job-timeout", type=float, default=3600, metavar="S",
                   help="longest a job may run in a worker, seconds (default 3600)")
    p.add_argument("--allow-private-urls", action="store_true",
                   help="let URL inputs, outputs and webhooks reach loopback, private and link-local addresses")
    p.add_argument("--allow-network", action="append", default=[], metavar="CIDR",
                   help="a network URLs may reach even without --allow-private-urls; repeatable")
    p.add_argument("--allow-s3", action="store_true",
                   help="accept s3:// inputs and outputs, read and written with this server's own credentials")
    p.add_argument("--no-dns", action="store_true",
                   help="resolve URL host names from /etc/hosts only, never through DNS (air-gapped hosts, tests)")

    p = sub.add_parser("diagnose", help="every analysis in one decode pass")
    p.add_argument("urls", nargs="+", metavar="url")
    add_common(p)
    p.add_argument("--only", default=None, metavar="BLOCKS", help="comma-separated blocks (default: all)")
    p.add_argument("--gating", choices=["level", "speech"], default="level",
                   help="loudness gating: level (BS.1770) or speech (dialogue-gated); default level")
    p.add_argument("--quality-stride", type=int, default=1, metavar="N",
                   help="score every Nth speech window with DNSMOS at least (default 1)")
    p.add_argument("--quality-windows", type=_quality_windows, default=64, metavar="N|all",
                   help="score at most N DNSMOS windows of a file, spread evenly (a systematic sample; "
                        "default 64, 9.6 min); all: every speech window")
    p.add_argument("--quality-model", choices=["int8", "float"], default="int8",
                   help="DNSMOS P.835 model for the quality and noise scores: int8 (default, ~2.5-2.8x "
                        "faster) or float (as published)")
    p.add_argument("--table", action="store_true", help="print a table instead of JSON")
    return parser


def _quality_windows(text: str) -> int | None:
    """``--quality-windows``: an integer >= 1, or ``all`` (None: every speech window)."""
    if text.strip().lower() == "all":
        return None
    try:
        return _int_at_least(text, 1)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: an integer >= 1 or all") from None


def one_line(text: str) -> str:
    """A message as one line: newlines and other control characters escaped (a file name may hold
    them; an error is one line on stderr whatever it quotes)."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(text))


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {one_line(message)}", file=sys.stderr)


def _decode_warnings(url: str, result: Any) -> None:
    """Truncation, layout changes and replaced samples: said on stderr, measured anyway."""
    if result.decode.truncated:
        _warn(f"{url}: {result.decode.problem}")
    for message in result.decode.warnings:
        _warn(f"{url}: {message}")


def _cmd_info(args: argparse.Namespace) -> int:
    from audiolib import io

    info = io.probe(args.url, stream_index=args.stream)
    print(dumps(info.to_dict()))
    return 0


def _cmd_loudness(args: argparse.Namespace) -> int:
    from audiolib.diagnose import diagnose

    # --gating speech needs the voice activity of the same decode: still one pass
    result = diagnose(args.url, only="loudness", start=args.start, end=args.end,
                      stream_index=args.stream, gating=args.gating)
    _decode_warnings(args.url, result)
    loud = result.blocks["loudness"]
    print(dumps(loud.to_sami() if args.sami else loud.to_dict()))
    return 0


def _cmd_silence(args: argparse.Namespace) -> int:
    from audiolib.diagnose import DiagnoseOptions, diagnose

    options = DiagnoseOptions(silence_noise=args.noise, silence_duration_s=args.duration, silence_mono=args.mono)
    result = diagnose(args.url, only="silence", start=args.start, end=args.end,
                      stream_index=args.stream, options=options)
    _decode_warnings(args.url, result)
    silence = result.blocks["silence"]
    if args.channels:
        channels = {k: [iv.to_dict() for iv in v] for k, v in silence.channel_intervals.items()}
        print(dumps({"silence": silence.to_list(), "channels": channels}))
    else:
        print(dumps(silence.to_list()))
    return 0


def _channel_list(text: str) -> tuple[int, ...]:
    from audiolib.errors import InvalidParameter

    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InvalidParameter(f"--compressed-channels={text!r}: give channel indices such as 0,1") from None
    if any(v < 0 for v in values):
        raise InvalidParameter(f"--compressed-channels={text!r}: channel indices are >= 0")
    return values


def _alarm_settings(path: str) -> tuple[Any, tuple[int, ...]]:
    import json

    from audiolib.errors import InvalidParameter
    from audioqc.audio_format_config import parse_audio_format_config

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise InvalidParameter(f"--alarms {path}: cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidParameter(f"--alarms {path}: not JSON: {exc}") from None
    # The reference's request shapes are accepted too (audioqc.audio_format_config, shared with
    # the service's /v1/videos:annotate).
    return parse_audio_format_config(data, f"--alarms {path}")


def _cmd_format(args: argparse.Namespace) -> int:
    from audiolib.diagnose import DiagnoseOptions, diagnose

    alarms, from_file = _alarm_settings(args.alarms) if args.alarms else (None, ())
    channels = tuple(sorted(set(_channel_list(args.compressed_channels)) | set(from_file)))
    options = DiagnoseOptions(compressed_channels=channels, alarms=alarms)
    result = diagnose(args.url, only="audio_format", start=args.start, end=args.end,
                      stream_index=args.stream, options=options)
    _decode_warnings(args.url, result)
    print(dumps(result.blocks["audio_format"].to_dict()))
    return 0


def _table_columns() -> list[tuple[str, int]]:
    """The table's columns: the file, every block's cells (audiolib.diagnose.REGISTRY), the status."""
    from audiolib.diagnose import REGISTRY

    return [("file", 28), *((c.header, c.width) for b in REGISTRY for c in b.cells), ("status", 0)]


def _fmt(value: Any, digits: int = 1) -> str:
    from audiolib.diagnose import format_cell

    return format_cell(value, digits)


def _table_row(url: str, result: Any | None, error: str | None) -> list[str]:
    from audiolib.diagnose import REGISTRY

    name = url.rsplit("/", 1)[-1]
    if result is None:
        return [name] + ["-"] * (len(_table_columns()) - 2) + [f"error: {error}"]
    cells = [name]
    for block in REGISTRY:
        value = result.media_info if block.name == "media_info" else result.blocks.get(block.name)
        cells += [c.text(value) if value is not None else "-" for c in block.cells]
    return cells + ["truncated" if result.decode.truncated else "ok"]


def _amount(text: str) -> int:
    from audiolib.errors import InvalidParameter

    try:
        return int(text.strip())
    except ValueError:
        raise InvalidParameter(f"--amount={text!r} must be an integer from 1 to 100") from None


def _cmd_denoise(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from audiolib.denoise import denoise_file, validate_amount

    amount = validate_amount(_amount(args.amount))
    err = Console(stderr=True)
    with Progress("[progress.description]{task.description}", BarColumn(), "{task.percentage:>3.0f}%",
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as bar:
        task_id = bar.add_task("denoising", total=None)

        def progress(done_s: float, total_s: float | None) -> None:
            bar.update(task_id, completed=done_s, total=total_s or None)

        result = denoise_file(args.input, args.output, amount=amount, format=args.format,
                              stream_index=args.stream, progress=progress)
    for message in result.warnings:
        _warn(f"{args.input}: {message}")
    print(dumps(result.to_dict()))
    return 0


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from audiolib.diagnose import DiagnoseOptions, diagnose, parse_blocks

    parse_blocks(args.only)  # a bad --only is one error, not one per file
    options = DiagnoseOptions(gating=args.gating, quality_stride=args.quality_stride,
                              quality_windows=args.quality_windows, quality_model=args.quality_model)
    single = len(args.urls) == 1 and not args.table
    rows: list[list[str]] = []
    outputs: list[dict[str, Any]] = []
    failed = 0
    for url in args.urls:
        try:
            result = diagnose(url, only=args.only, start=args.start, end=args.end,
                              stream_index=args.stream, options=options)
        except Exception as exc:  # one bad file never stops the others
            if single or isinstance(exc, KeyboardInterrupt):
                raise
            failed += 1
            message = (str(exc) if isinstance(exc, AudioQCError)
                       else f"{url}: internal error: {type(exc).__name__}: {exc}")
            print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)
            rows.append(_table_row(url, None, message.split(": ", 1)[-1]))
            outputs.append({"url": url, "error": message})
            continue
        _decode_warnings(url, result)
        rows.append(_table_row(url, result, None))
        outputs.append({"url": url, **result.to_dict()})
    if args.table:
        columns = _table_columns()
        header = [name for name, _ in columns]
        widths = [max(w, len(h), *(len(r[i]) for r in rows)) for i, (h, w) in enumerate(columns)]
        for line in [header] + rows:
            print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
    elif single:
        out = outputs[0]
        out.pop("url")
        print(dumps(out))
    else:
        print(dumps(outputs))
    return 1 if failed else 0


def _print_remedies(remedy: dict[str, Any]) -> None:
    """The remedy branch's tally and the before/after table of the files it fixed."""
    print(f"remedies -> {remedy['remedy_url']}: {remedy['remedied']} remedied: {remedy['fixed']} fixed (now pass), "
          f"{remedy['still_failing']} improved but still failing, {remedy['errors']} failed; "
          f"{remedy['not_fixable']} not fixable (no remedy for their failures)"
          + (f"; {remedy['reused']} reused from earlier runs" if remedy.get("reused") else ""))
    if not remedy["files"]:
        return
    header = ["file", "verdict", "I_LUFS", "TP_dBTP", "SNR_dB", "quality"]
    rows = []
    for f in remedy["files"]:
        b, a = f["before"], f.get("after") or {}
        cells = [f["file"].rsplit("/", 1)[-1]]
        after_verdict = "error" if a.get("error") and a.get("verdict") is None else a.get("verdict")
        cells.append(f"{b.get('verdict')} -> {after_verdict or '-'}")
        for key in ("loudness_integrated_lufs", "loudness_true_peak_dbtp", "noise_score_snr_db",
                    "quality_score_average"):
            cells.append(f"{_fmt(b.get(key))} -> {_fmt(a.get(key))}")
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print()
    for line in [header] + rows:
        print("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())


def quiet_prefect(verbose: bool) -> None:
    """Prefect's own logs (task failures with their tracebacks included) stay in the flow run's
    logs on its API; without ``--verbose`` the terminal gets this command's own lines only."""
    import logging
    import os

    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        logging.raiseExceptions = False  # no "--- Error logging to API ---" for a log line sent late
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _cmd_audit(args: argparse.Namespace) -> int:
    from flows.checks import check_audit
    from flows.startup import Startup, prewarm_for_new_report

    quiet_prefect(args.verbose)  # first: the processes started below inherit it
    # every argument that can be wrong, before Prefect is even imported (~2 s); a new report means
    # that every file needs analysis: the workers' fork server starts its imports as soon as the
    # paths are known to be fine
    check_audit(args.source, args.report, policy=args.policy, run_id=args.run_id, batch_size=args.batch_size,
                part_rows=args.part_rows, workers=args.workers if args.dask is None else None,
                remedy_url=args.remedy_to, trends=args.trends, create_report_bucket=args.create_report_bucket,
                paths_checked=lambda: prewarm_for_new_report(args.report, args.dask))
    # Before Prefect is imported (~1 s): launch the temporary Prefect server unless one is up or
    # configured, list the collection, read the report's state, and start the workers' fork server
    # only if a file needs analysis; all of it overlaps with the imports below (flows/startup.py).
    # Without one running, the background Prefect server is started now (its first use), unless
    # --temporary-server or AUDIOQC_PREFECT_SERVER=temporary (flows/server.py).
    from flows import server as servers

    startup = Startup.begin(args.source, args.report, workers=args.workers, dask_address=args.dask,
                            include=args.include, exclude=args.exclude, run_id=args.run_id, reuse=args.reuse,
                            policy=args.policy, batch_size=args.batch_size,
                            auto_start=not args.temporary_server and servers.auto_start())
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    import flows.audit as audit_flow
    from audioqc import progress

    err = Console(stderr=True)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=False, disable=not err.is_terminal) as bar:
        task_id = bar.add_task("auditing", total=None)

        def hook(done: int, total: int) -> None:
            bar.update(task_id, completed=done, total=total)

        progress.hook = hook
        try:
            summary = audit_flow.run_audit(
                args.source, args.report, workers=args.workers, dask_address=args.dask, policy=args.policy,
                include=args.include, exclude=args.exclude, batch_size=args.batch_size,
                part_rows=args.part_rows, run_id=args.run_id,
                reuse=args.reuse, trends=args.trends, remedy_url=args.remedy_to,
                create_report_bucket=args.create_report_bucket, startup=startup)
        finally:
            progress.hook = None
    _server_notice(startup)
    for message in summary.get("warnings", []):
        _warn(message)
    counts = summary["counts"]
    print(f"run {summary['run_id']}: {summary['files']} files under {summary['source']} -> {summary['report']} "
          f"(run_date={summary['run_date']})")
    print(f"  analysed {summary['analysed']}, reused {summary['reused']} unchanged, "
          f"{summary['already_done']} already in this run")
    width = max([len(k) for k in counts] + [6])
    for key in ("pass", "ok", "warn", "fail", "error"):
        if key in counts:
            print(f"  {key.ljust(width)}  {counts[key]}")
    for w in summary["worst"][:10]:
        why = w["why"] if w["why"].startswith(w["file"]) else f"{w['file']}: {w['why']}"
        print(f"  {w['status']}: {why}")
    if summary.get("remedy"):
        _print_remedies(summary["remedy"])
    api = summary.get("prefect_api") or {}
    if api.get("kind") == "background":  # the runs stay there: say where to look
        run_url = api["url"].removesuffix("/api") + (f"/runs/flow-run/{summary['flow_run_id']}"
                                                     if summary.get("flow_run_id") else "")
        print(f"  flow run: {run_url}")
    if args.trends:
        found = summary.get("trends") or {}
        if found.get("error"):
            _warn(f"trends: {found['error']}")
        else:
            print()
            print(found.get("text", "").rstrip())
            print(f"trends report: {found.get('html')}")
    return 0


def _server_notice(startup: Any) -> None:
    """One line on stderr when this audit started the background Prefect server (or could not)."""
    if startup.warning:
        _warn(startup.warning)
    server = startup.started_server
    if server is None:
        return
    idle = server.idle_seconds
    stops = (f"stops after {_duration(idle)} without an audit" if idle > 0 else "keeps running")
    print(f"{PROG}: started a background Prefect server at {server.ui_url} (runs are kept there; {stops}; "
          f"'{PROG} server stop' stops it now)", file=sys.stderr)


def _cmd_server(args: argparse.Namespace) -> int:
    """``audioqc server start|stop|status``: the background Prefect server audits use while it runs
    (flows/server.py). Nothing here imports Prefect."""
    import os
    import time

    from flows import server as servers

    home = servers.prefect_home()
    if args.action == "start":
        if args.idle_minutes < 0:
            return _usage(args, "--idle-minutes must be >= 0 (0: keep running)")
        running, started = servers.start_background(args.host, args.port, timeout=args.timeout,
                                                     idle=args.idle_minutes * 60)
        if not running.ours:  # Prefect's own background server
            print(f"a Prefect server started by '{running.started_by}' is running at {running.ui_url} (pid "
                  f"{running.pid}; PREFECT_HOME {home}): audits use it; 'prefect server stop' stops it")
            return 0
        what = "started" if started else "already running"
        until = (f"until {_duration(running.idle_seconds)} pass without an audit, or 'audioqc server stop'"
                 if running.idle_seconds > 0 else "until 'audioqc server stop'")
        print(f"Prefect server {what} at {running.ui_url} (pid {running.pid}; PREFECT_HOME {home}): audits record "
              f"their runs there {until}")
        if running.log:
            print(f"  log: {running.log}")
        return 0
    if args.action == "stop":
        stopped = servers.stop_background()
        print(f"Prefect server at {stopped.ui_url} stopped (pid {stopped.pid})" if stopped
              else f"no audioqc Prefect server running (PREFECT_HOME {home})")
        return 0
    # status: what runs, and what an audit would use now
    found = servers.read_state()
    up = found is not None and servers._is_prefect_server(found.pid)
    if found is not None and up:
        answering = servers.healthy(found.api_url)
        age = time.time() - found.started if found.started else None
        print(f"audioqc server: running at {found.ui_url} (pid {found.pid}"
              + (f", up {_duration(age)}" if age is not None else "") + f", PREFECT_HOME {home}"
              + (f", started by '{found.started_by}'" if found.started_by != "audioqc server start" else "")
              + (f", stops after {_duration(found.idle_seconds)} without an audit" if found.idle_seconds > 0 else "")
              + ("" if answering else "; NOT ANSWERING: 'audioqc server stop', then start again") + ")")
    else:
        print(f"audioqc server: not running (PREFECT_HOME {home})")
    kind, url = servers.resolve()
    if kind == "configured":
        source = "PREFECT_API_URL" if os.environ.get("PREFECT_API_URL") else "PREFECT_API_URL of the Prefect profile"
        reach = "answering" if url and servers.healthy(url) else "not answering"
        print(f"audits use: {url} ({source}; {reach})")
    elif kind == "background":
        other = servers.background()
        by = f" (started by '{other.started_by}')" if other and not other.ours else ""
        print(f"audits use: {url}{by}")
    else:
        try:
            auto = servers.auto_start()
        except AudioQCError:
            auto = False
        print("audits use: the background Prefect server, which the next audit starts" if auto
              else "audits use: a temporary Prefect server each, which stops when the audit ends")
    others = [p for p in servers.prefect_servers() if p["kind"] != "background"]
    for p in others:
        if p["kind"] == "temporary":
            print(f"  temporary server of a running audit: pid {p['pid']} (audit pid {p['parent']})")
        else:
            print(f"  other Prefect server: pid {p['pid']}: {p['cmd']}")
    return 0 if up else 1


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


def _exit_now(code: int) -> None:
    """End the process without Python's module teardown, which took ~1.3 s after an audit
    (measured: the summary printed at 7.19 s, the process gone at 8.46 s). What a normal exit
    does first still happens, in its order: Prefect's event and log workers drain
    (``threading._shutdown`` runs their ``threading._register_atexit`` hooks and joins the
    remaining threads), then the ``atexit`` handlers (multiprocessing's, Prefect's), then the
    streams are flushed."""
    import atexit
    import os
    import threading

    try:
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # never lose the exit status over it; a normal exit then
        raise SystemExit(code) from None
    os._exit(code)


def _usage(args: argparse.Namespace, message: str) -> int:
    print(f"{PROG} {args.command}: usage error: {message} (see '{PROG} {args.command} --help')", file=sys.stderr)
    return 2


def _write(path: str, text: str, what: str) -> None:
    from audiolib.errors import InvalidParameter
    from audioqc.html_report import write_text

    try:
        write_text(text, path)
    except OSError as exc:
        raise InvalidParameter(f"{what} {path}: cannot write: {exc.strerror or exc}") from None


def _write_pngs(figures: dict[str, bytes], directory: str) -> None:
    from audiolib.errors import InvalidParameter
    from audioqc.plots import write_pngs

    try:
        write_pngs(figures, directory)
    except OSError as exc:
        raise InvalidParameter(f"--png {directory}: cannot write: {exc.strerror or exc}") from None


def _cmd_trends(args: argparse.Namespace) -> int:
    from audiolib.errors import InvalidParameter
    from audioqc import html_report, trends
    from audioqc.policy import load_policy
    from audioqc.watch import parse_margins

    args.url = args.report  # named by an internal error's line
    margins = [m for group in args.margin or [] for m in group]
    try:
        parse_margins(margins)
        if not 0 < args.alpha < 1:
            raise InvalidParameter(f"--alpha {args.alpha!r}: between 0 and 1")
        if args.baseline_runs < 1:
            raise InvalidParameter(f"--baseline-runs {args.baseline_runs!r}: at least 1")
        policy = load_policy(args.policy) if args.policy else None
    except InvalidParameter as exc:
        return _usage(args, str(exc))
    result = trends.trends(args.report, group_by=args.group_by, by=args.by, baseline_runs=args.baseline_runs,
                           margins=margins, alpha=args.alpha, stage=args.stage, root=args.root)
    if policy is None and result.policy:
        try:
            policy = load_policy(result.policy)
        except InvalidParameter:  # the run's policy file moved: plots without its window
            policy = None
    if args.html or args.png:
        figures = html_report.trends_figures(result, policy)
        if args.png:
            _write_pngs(figures, args.png)
        if args.html:
            _write(args.html, html_report.trends_html(result, figures, policy=policy), "--html")
    print(dumps(result.to_dict()) if args.json else trends.format_text(result), end="\n" if args.json else "")
    return 3 if args.fail_on_alert and result.alerts else 0


def _cmd_compare(args: argparse.Namespace) -> int:
    import os

    from audiolib.errors import InvalidParameter
    from audioqc import compare, html_report

    args.url = f"{args.baseline} vs {args.candidate}"  # named by an internal error's line
    if not args.verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        gates = [compare.Gate.parse(g) for group in args.gate or [] for g in group]
        if args.workers < 1:
            raise InvalidParameter(f"--workers {args.workers!r}: at least 1")
        if args.policy:
            from audioqc.policy import load_policy

            load_policy(args.policy)
    except InvalidParameter as exc:
        return _usage(args, str(exc))
    result = compare.compare(args.baseline, args.candidate, gates=gates, policy=args.policy, stage=args.stage,
                             pair_by=args.pair_by, workers=args.workers)
    if args.html or args.png:
        figures = html_report.compare_figures(result)
        if args.png:
            _write_pngs(figures, args.png)
        if args.html:
            _write(args.html, html_report.compare_html(result, figures), "--html")
    if args.markdown:
        _write(args.markdown, compare.format_markdown(result), "--markdown")
    print(dumps(result.to_dict()) if args.json else compare.format_text(result), end="\n" if args.json else "")
    for g in result.failed_gates:
        worst = ", ".join(f"{w.file} ({w.delta:+.3g})" for w in g.worst[:5])
        print(f"{PROG}: gate {g.gate.text} {g.reason}" + (f"; worst: {worst}" if worst else ""), file=sys.stderr)
    return 0 if result.passed else 1


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging
    import os

    from audiolib.errors import InvalidParameter
    from audioqc.service.config import MiB, ServiceConfig, default_workers, load_api_keys

    args.url = f"serve {args.host}:{args.port}"  # named by an internal error's line
    try:
        if not 0 < args.port < 65536:
            raise InvalidParameter(f"--port {args.port!r}: 1..65535")
        config = ServiceConfig(
            data_dir=os.path.abspath(args.data_dir),
            api_keys=load_api_keys(os.environ.get("AUDIOQC_API_KEYS"), args.key_file),
            workers=args.workers if args.workers is not None else default_workers(), max_queue=args.max_queue,
            max_media_bytes=int(args.max_upload_mb * MiB), download_timeout_s=args.download_timeout,
            job_timeout_s=args.job_timeout, allow_private_urls=args.allow_private_urls,
            allowed_networks=tuple(args.allow_network), allow_s3=args.allow_s3, hosts_only=args.no_dns)
    except InvalidParameter as exc:
        return _usage(args, str(exc))
    import uvicorn

    from audioqc.service.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # uvicorn's access log would print query strings (SAMI's token, presigned URLs): the service
    # logs its own lines without them (audioqc.service.middleware).
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_config=None, access_log=False,
                lifespan="on", timeout_graceful_shutdown=5)
    return 0


_COMMANDS = {"info": _cmd_info, "loudness": _cmd_loudness, "silence": _cmd_silence, "format": _cmd_format,
             "audit": _cmd_audit, "denoise": _cmd_denoise, "diagnose": _cmd_diagnose, "trends": _cmd_trends,
             "compare": _cmd_compare, "serve": _cmd_serve, "server": _cmd_server}


#: Options whose values start with "-" (``--noise -30dB``), which argparse would take for flags.
_NEGATIVE_VALUE_OPTIONS = ("--noise",)


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        if items[i] in _NEGATIVE_VALUE_OPTIONS and i + 1 < len(items) and items[i + 1].startswith("-"):
            out.append(f"{items[i]}={items[i + 1]}")
            i += 2
        else:
            out.append(items[i])
            i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``audioqc`` console command; returns the exit code."""
    args = build_parser().parse_args(_join_negative_values(sys.argv[1:] if argv is None else argv))
    if argv is None and args.command == "audit":  # the audit command as a program: exit at once
        _exit_now(_run(args))
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return _COMMANDS[args.command](args)
    except AudioQCError as exc:
        print(f"{PROG}: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except MemoryError:
        print(f"{PROG}: error: out of memory", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line, never a traceback
        target = (getattr(args, "url", None) or getattr(args, "input", None)
                  or ",".join(getattr(args, "urls", []) or []))
        print(one_line(f"{PROG}: internal error: {target}: {type(exc).__name__}: {exc}"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
