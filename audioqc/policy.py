"""QC policies: YAML rules on report metrics, and a pass/warn/fail verdict per file.

A policy is a YAML file::

    name: EBU R128 broadcast
    description: ...
    source: EBU R 128 v4.0 (2020)          # the spec the values come from
    rules:
      - metric: loudness_integrated_lufs    # a report metric column (audioqc.report.metric_columns)
        between: [-24.0, -22.0]             # exactly one condition, see below
        severity: fail                      # fail | warn
        advice: "Normalise the programme to -23 LUFS ..."
        when_missing: warn                  # fail | warn | pass: what a null metric means (default warn)
        remedy: loudness                    # optional: the remedy that repairs it (audioqc.remedies)
    remedies:                               # optional: each named remedy's parameters
      loudness: {target_lufs: -23.0, true_peak_max_dbtp: -1.0}
      denoise: {amount: 100}

Conditions, by the metric's Arrow type (checked when the policy loads):

- numbers (``int64``, ``double``): ``between: [lo, hi]`` (inclusive), ``min: x`` (value >= x),
  ``max: x`` (value <= x), ``equals``, ``not_equals``, ``in: [...]``, ``not_in: [...]``;
- strings: ``equals``, ``not_equals``, ``in``, ``not_in``;
- booleans: ``equals: true|false``, ``not_equals``, ``is_true: true``, ``is_false: true``;
- lists of scalars (``list<string>``, ...): ``contains: x``, ``not_contains: x``,
  ``empty: true|false``.

Nested columns (structs, maps, lists of structs) take no rules. Everything is validated on load:
an unknown metric (with close names suggested), an unknown key, a condition or operand that does not
fit the metric's type, a bad severity, an unknown remedy or remedy parameter, a remedy named by a
rule whose parameters have no default (the loudness target), no rules or malformed YAML raise
:class:`~audiolib.errors.InvalidParameter` naming the file and the problem, so a typo never turns
into a silent pass.

Presets live in ``data/policies/NAME.yaml`` of the repository (:func:`list_presets`); a preset is
loaded by its name (``load_policy("ebu-r128")``), any other policy by its path or fsspec URL.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from audiolib.errors import AudioQCError, InvalidParameter

from .remedies import REMEDY_ORDER, Remedy
from .remedies import validate as validate_remedy
from .report import REASON_KEYS as _REPORT_REASON_KEYS
from .report import metric_columns, metric_type

SEVERITIES = ("fail", "warn")
WHEN_MISSING = ("fail", "warn", "pass")
VERDICTS = ("pass", "warn", "fail")
#: Keys of one reason in :attr:`Verdict.reasons`: the report's ``verdict_reasons`` struct, one
#: definition (audioqc.report).
REASON_KEYS = _REPORT_REASON_KEYS

_NUMBER_OPS = ("between", "min", "max", "equals", "not_equals", "in", "not_in")
_STRING_OPS = ("equals", "not_equals", "in", "not_in")
_BOOL_OPS = ("equals", "not_equals", "is_true", "is_false")
_LIST_OPS = ("contains", "not_contains", "empty")
OPERATORS = tuple(dict.fromkeys(_NUMBER_OPS + _BOOL_OPS + _LIST_OPS))
_RULE_KEYS = ("metric", "severity", "advice", "when_missing", "remedy", *OPERATORS)
_POLICY_KEYS = ("name", "description", "source", "rules", "remedies")
_SYMBOLS = {"min": ">=", "max": "<=", "equals": "==", "not_equals": "!="}


# ----------------------------------------------------------------------------------------------
# the model


@dataclass(frozen=True)
class Rule:
    """One condition on one metric.

    ``op`` is one of :data:`OPERATORS`; ``operand`` its value (a ``(lo, hi)`` tuple for
    ``between``, a tuple for ``in``/``not_in``, ``True`` for ``is_true``/``is_false``).
    """

    metric: str
    op: str
    operand: Any
    severity: str
    advice: str
    when_missing: str = "warn"
    remedy: str | None = None

    def describe(self) -> str:
        """The condition as text: ``between [-24.0, -22.0]``, ``<= -1.0``, ``== 0``."""
        x = self.operand
        if self.op == "between":
            return f"between [{_fmt(x[0])}, {_fmt(x[1])}]"
        if self.op in _SYMBOLS:
            return f"{_SYMBOLS[self.op]} {_fmt(x)}"
        if self.op in ("in", "not_in"):
            return f"{self.op.replace('_', ' ')} [{', '.join(_fmt(v) for v in x)}]"
        if self.op in ("is_true", "is_false"):
            return self.op.replace("_", " ")
        if self.op == "empty":
            return "is empty" if x else "is not empty"
        return f"{self.op.replace('_', ' ')} {_fmt(x)}"

    def holds(self, value: Any) -> bool:
        """Whether a (non-null) value satisfies the rule."""
        op, x = self.op, self.operand
        if op == "between":
            return x[0] <= value <= x[1]
        if op == "min":
            return value >= x
        if op == "max":
            return value <= x
        if op == "equals":
            return _same(value, x)
        if op == "not_equals":
            return not _same(value, x)
        if op == "in":
            return any(_same(value, v) for v in x)
        if op == "not_in":
            return not any(_same(value, v) for v in x)
        if op == "is_true":
            return value is True
        if op == "is_false":
            return value is False
        if op == "contains":
            return any(_same(v, x) for v in value)
        if op == "not_contains":
            return not any(_same(v, x) for v in value)
        if op == "empty":
            return (len(value) == 0) is x
        raise AssertionError(op)  # validated on load


@dataclass(frozen=True)
class Policy:
    """A named set of rules (see the module docstring for the YAML form)."""

    name: str
    description: str
    source: str
    rules: tuple[Rule, ...]
    #: Parameters of every remedy a rule names (validated; :mod:`audioqc.remedies`), by name.
    remedies: tuple[tuple[str, Remedy], ...] = ()

    @property
    def metrics(self) -> tuple[str, ...]:
        """Metric columns the policy reads, in rule order, without repeats."""
        return tuple(dict.fromkeys(r.metric for r in self.rules))

    def remedy(self, name: str) -> Remedy:
        return dict(self.remedies)[name]

    def remedies_for(self, verdict: Verdict) -> tuple[Remedy, ...]:
        """The remedies named by the rules a verdict did not meet, in the order they are applied
        (:data:`audioqc.remedies.REMEDY_ORDER`); empty for a pass or when no failed rule has one."""
        named = {r.get("remedy") for r in verdict.reasons if r.get("remedy")}
        return tuple(self.remedy(n) for n in REMEDY_ORDER if n in named)


@dataclass(frozen=True)
class Verdict:
    """The verdict on one file: ``"pass"``, ``"warn"`` or ``"fail"``.

    ``reasons`` holds one dict per rule not met, with the keys of :data:`REASON_KEYS`:
    ``metric``, ``rule`` (the condition as text), ``severity`` (``fail``/``warn``), ``advice``,
    ``value`` (the measured value, ``None`` when it could not be measured) and ``remedy`` (the
    remedy the rule names, or ``None``).
    """

    verdict: str
    reasons: tuple[dict[str, Any], ...] = ()

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reasons": [dict(r) for r in self.reasons]}


# ----------------------------------------------------------------------------------------------
# evaluation


def evaluate(policy: Policy, row: Mapping[str, Any]) -> Verdict:
    """Check one report row (``audioqc.report.flatten(result)`` or a full report row).

    A metric that is absent from the row, null or NaN counts as not measured and is judged by the
    rule's ``when_missing``. The verdict is ``fail`` if any ``fail`` reason, else ``warn`` if any
    reason, else ``pass``.

    Raises
    ------
    InvalidParameter
        For a row with ``status == "error"``: a file that could not be analysed has no metrics
        to judge; the caller reports the error instead of a verdict.
    """
    if row.get("status") == "error":
        raise InvalidParameter(
            f"{row.get('source_url') or 'row'}: status 'error' ({row.get('error')}): "
            "an error row has no metrics to evaluate")
    reasons: list[dict[str, Any]] = []
    for rule in policy.rules:
        value = row.get(rule.metric)
        if _missing(value):
            if rule.when_missing == "pass":
                continue
            reasons.append({
                "metric": rule.metric, "rule": f"{rule.describe()} (not measured)",
                "severity": rule.when_missing,
                "advice": f"{rule.metric} could not be measured for this file, so the rule "
                          f"'{rule.describe()}' was not checked. {rule.advice}",
                "value": None,
                "remedy": None,  # nothing measured: nothing a remedy could be sure to repair
            })
        elif not rule.holds(value):
            reasons.append({"metric": rule.metric, "rule": rule.describe(), "severity": rule.severity,
                            "advice": rule.advice, "value": value, "remedy": rule.remedy})
    severities = {r["severity"] for r in reasons}
    verdict = "fail" if "fail" in severities else "warn" if severities else "pass"
    return Verdict(verdict, tuple(reasons))


def _fmt(value: Any) -> str:
    """An operand as it reads in YAML (``true``, ``-1.0``, ``'speech'``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _same(a: Any, b: Any) -> bool:
    """Equality that does not let ``True == 1`` or ``"1" == 1`` through."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return a == b


# ----------------------------------------------------------------------------------------------
# loading and validation


def _preset_dirs() -> list[Any]:
    """Where presets are looked up, first match wins.

    1. ``audioqc/policies`` inside the installed package (``importlib.resources``), for a wheel
       that ships ``data/policies`` as package data under that name;
    2. ``data/policies`` next to the ``audioqc`` package: a source checkout or an editable
       install (the repository layout).
    """
    dirs: list[Any] = []
    try:
        packaged = resources.files("audioqc").joinpath("policies")
        if packaged.is_dir():
            dirs.append(packaged)
    except (ModuleNotFoundError, TypeError, OSError):  # pragma: no cover - unusual loaders
        pass
    repo = Path(__file__).resolve().parent.parent / "data" / "policies"
    if repo.is_dir():
        dirs.append(repo)
    return dirs


def _preset_files() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for d in _preset_dirs():
        for entry in d.iterdir():
            name = entry.name
            if name.endswith(".yaml") and not name.startswith((".", "_")) and entry.is_file():
                found.setdefault(name[: -len(".yaml")], entry)
    return dict(sorted(found.items()))


def list_presets() -> list[str]:
    """Names of the preset policies (``ebu-r128``, ``podcast``, ...), sorted."""
    return list(_preset_files())


def _is_path_like(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith((".yaml", ".yml")) or Path(text).is_file()


def load_policy(name_or_path: str | Path) -> Policy:
    """Load and validate a policy: a preset name (see :func:`list_presets`), a path or a URL.

    A bare name (no slash, no ``.yaml``/``.yml`` suffix, not an existing file) is a preset;
    anything else is read as a file (local path or fsspec URL).

    Raises
    ------
    InvalidParameter
        Unknown preset, unreadable file, or an invalid policy (the message names the file).
    """
    if isinstance(name_or_path, Path) or _is_path_like(str(name_or_path)):
        where = str(name_or_path)
        text = _read_text(where)
    else:
        presets = _preset_files()
        entry = presets.get(str(name_or_path))
        if entry is None:
            close = difflib.get_close_matches(str(name_or_path), list(presets), n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise InvalidParameter(
                f"unknown policy preset {str(name_or_path)!r}{hint}; presets: {', '.join(presets) or '(none)'}; "
                "or give the path of a policy YAML file")
        where = str(entry)
        text = entry.read_text(encoding="utf-8")
    return parse_policy(text, source=where)


#: Limits on what a policy may be (a policy can come from anyone once a service accepts one): its
#: size, YAML aliases (a "billion laughs" bomb expands a few anchors exponentially), nesting depth
#: and rule count. The presets use at most 16 rules, 3 levels and no alias.
MAX_POLICY_BYTES = 1 << 20
MAX_ALIASES = 64
MAX_DEPTH = 16
MAX_RULES = 1000
#: Longest excerpt of a bad value quoted in an error message.
EXCERPT_CHARS = 80


def _excerpt(value: Any) -> str:
    """A value as an error message may quote it: at most EXCERPT_CHARS characters of its repr."""
    text = repr(value) if not isinstance(value, str) else repr(value[:EXCERPT_CHARS + 1])
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 3] + "..."


def _read_text(where: str) -> str:
    """A policy file's text, at most MAX_POLICY_BYTES, from a path or any fsspec URL (with the
    storage timeouts; a refused connection or an HTTP error says so, not "not found")."""
    from audiolib import storage

    try:
        if "://" in where:
            if where.split("://", 1)[0].lower() in ("http", "https"):
                storage.check_http(where)  # fsspec's HTTP filesystem calls every failure "not found"
            fs, path = storage.filesystem(where)
            with fs.open(path, "rb") as f:
                data = f.read(MAX_POLICY_BYTES + 1)
        else:
            with open(where, "rb") as f:
                data = f.read(MAX_POLICY_BYTES + 1)
    except FileNotFoundError:
        raise InvalidParameter(f"{where}: policy file not found") from None
    except IsADirectoryError:
        raise InvalidParameter(f"{where}: is a directory, not a policy file") from None
    except InvalidParameter:
        raise
    except AudioQCError as exc:
        raise InvalidParameter(f"{where}: cannot read policy file: {getattr(exc, 'problem', exc)}") from None
    except Exception as exc:  # network and credential errors differ per backend
        err = storage.remote_error(where, exc) if "://" in where else exc
        problem = getattr(err, "problem", None) or getattr(err, "strerror", None) or str(err)
        raise InvalidParameter(f"{where}: cannot read policy file: {problem}") from None
    if len(data) > MAX_POLICY_BYTES:
        raise InvalidParameter(f"{where}: a policy is at most {MAX_POLICY_BYTES // 1024} KiB; this file is larger")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidParameter(f"{where}: not UTF-8 text (byte {exc.start})") from None


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a cap on aliases and on nesting depth, checked while composing
    (before anything is expanded or recursed into)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _PolicyTooComplex(f"more than {MAX_ALIASES} YAML aliases (*name)")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _PolicyTooComplex(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _PolicyTooComplex(Exception):
    pass


def parse_policy(text: str, *, source: str = "<policy>") -> Policy:
    """Parse and validate policy YAML text; ``source`` names it in error messages."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise InvalidParameter(f"{source}: a policy is at most {MAX_POLICY_BYTES // 1024} KiB; this text is larger")
    try:
        data = yaml.load(text, Loader=_LimitedLoader)  # noqa: S506 (a SafeLoader with limits)
    except _PolicyTooComplex as exc:
        raise InvalidParameter(f"{source}: not accepted as a policy: {exc}") from None
    except RecursionError:
        raise InvalidParameter(f"{source}: not accepted as a policy: nested too deeply") from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise InvalidParameter(f"{source}: malformed YAML: {detail[:300]}") from None
    return policy_from_dict(data, source=source)


def policy_from_dict(data: Any, *, source: str = "<policy>") -> Policy:
    """Validate a policy given as a mapping (the parsed YAML)."""
    if not isinstance(data, Mapping):
        raise InvalidParameter(f"{source}: a policy is a mapping with keys {', '.join(_POLICY_KEYS)}; "
                               f"got {type(data).__name__}")
    _no_unknown_keys(data, _POLICY_KEYS, f"{source}")
    name = data.get("name", Path(source).stem if source != "<policy>" else "")
    for key, value in (("name", name), ("description", data.get("description", "")),
                       ("source", data.get("source", ""))):
        if not isinstance(value, str):
            raise InvalidParameter(f"{source}: {key} must be text, got {_excerpt(value)}")
    if not name.strip():
        raise InvalidParameter(f"{source}: the policy needs a name")
    rules = data.get("rules")
    if not isinstance(rules, list) or not rules:
        raise InvalidParameter(f"{source}: 'rules' must be a non-empty list of rules, got {_excerpt(rules)}")
    if len(rules) > MAX_RULES:
        raise InvalidParameter(f"{source}: {len(rules)} rules: a policy has at most {MAX_RULES}")
    columns = metric_columns()
    parsed = tuple(_rule(r, i, source, columns) for i, r in enumerate(rules, 1))
    return Policy(name=name, description=data.get("description", "") or "",
                  source=data.get("source", "") or "", rules=parsed,
                  remedies=_remedies(data.get("remedies"), parsed, source))


def _remedies(raw: Any, rules: tuple[Rule, ...], source: str) -> tuple[tuple[str, Remedy], ...]:
    """The policy's ``remedies`` mapping, validated, with every remedy a rule names present (its
    defaults where the policy gives no parameters)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InvalidParameter(f"{source}: 'remedies' is a mapping of remedy name -> parameters, got {_excerpt(raw)}")
    named = {r.remedy for r in rules if r.remedy}
    speech = any(r.remedy == "loudness" and r.metric == "loudness_speech_integrated_lufs" for r in rules)
    out: dict[str, Remedy] = {}
    for name in REMEDY_ORDER:
        if name in raw or name in named:
            if name not in raw and name == "loudness":
                users = ", ".join(r.metric for r in rules if r.remedy == name)
                raise InvalidParameter(
                    f"{source}: rules on {users} name remedy 'loudness', which needs "
                    f"'remedies: {{loudness: {{target_lufs: ...}}}}' (no default target fits every spec)"
                )
            out[name] = validate_remedy(
                name, raw.get(name), f"{source}: remedies", gating="speech" if speech else "level"
            )
    for name in raw:
        if name not in REMEDY_ORDER:
            validate_remedy(str(name), raw[name], f"{source}: remedies")  # raises: unknown remedy
    return tuple(out.items())


def _no_unknown_keys(data: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), allowed, n=1, cutoff=0.6)
            hints.append(f"{_excerpt(k)}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise InvalidParameter(f"{where}: unknown key(s) {', '.join(hints)}; allowed: {', '.join(allowed)}")


def _kind(dtype: pa.DataType) -> str:
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
        return "number"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_list(dtype) and _kind(dtype.value_type) in ("bool", "number", "string"):
        return "list"
    return "nested"


_KIND_OPS = {"number": _NUMBER_OPS, "string": _STRING_OPS, "bool": _BOOL_OPS, "list": _LIST_OPS,
             "nested": ()}


def _rule(raw: Any, index: int, source: str, columns: list[str]) -> Rule:
    where = f"{source}: rule {index}"
    if not isinstance(raw, Mapping):
        raise InvalidParameter(
            f"{where}: a rule is a mapping (metric, a condition, severity, advice), got {_excerpt(raw)}"
        )
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric:
        raise InvalidParameter(f"{where}: 'metric' (a report column name) is required")
    where = f"{where} ({metric})"
    _no_unknown_keys(raw, _RULE_KEYS, where)
    if metric not in columns:
        close = difflib.get_close_matches(metric, columns, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see audioqc.report.metric_columns()"
        raise InvalidParameter(f"{where}: unknown metric {_excerpt(metric)}{hint}")
    dtype = metric_type(metric)
    kind = _kind(dtype)
    ops = [k for k in raw if k in OPERATORS]
    if len(ops) != 1:
        raise InvalidParameter(
            f"{where}: give exactly one condition ({', '.join(_KIND_OPS[kind]) or 'none fits'}); got "
            f"{', '.join(ops) or 'none'}")
    op = ops[0]
    if op not in _KIND_OPS[kind]:
        allowed = ", ".join(_KIND_OPS[kind]) or "none: nested columns take no rules"
        raise InvalidParameter(f"{where}: {_excerpt(op)} does not apply to metric type {dtype} (conditions: {allowed})")
    operand = _operand(op, raw[op], kind, dtype, where)
    severity = raw.get("severity")
    if severity not in SEVERITIES:
        raise InvalidParameter(f"{where}: severity must be one of {', '.join(SEVERITIES)}, got {_excerpt(severity)}")
    advice = raw.get("advice")
    if not isinstance(advice, str) or not advice.strip():
        raise InvalidParameter(f"{where}: 'advice' (what to do when the rule is not met) is required")
    when_missing = raw.get("when_missing", "warn")
    if when_missing not in WHEN_MISSING:
        raise InvalidParameter(
            f"{where}: when_missing must be one of {', '.join(WHEN_MISSING)}, got {_excerpt(when_missing)}"
        )
    remedy = raw.get("remedy")
    if remedy is not None and remedy not in REMEDY_ORDER:
        close = difflib.get_close_matches(str(remedy), REMEDY_ORDER, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidParameter(f"{where}: unknown remedy {_excerpt(remedy)}{hint}; remedies: {', '.join(REMEDY_ORDER)}")
    return Rule(metric=metric, op=op, operand=operand, severity=severity, advice=" ".join(advice.split()),
                when_missing=when_missing, remedy=remedy)


def _scalar(value: Any, kind: str, dtype: pa.DataType, where: str, what: str) -> Any:
    """An operand checked against the metric's scalar kind."""
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidParameter(
                f"{where}: {what} must be a finite number for metric type {dtype}, got {_excerpt(value)}"
            )
        if (
            pa.types.is_integer(dtype)
            and isinstance(value, float)
            and what.startswith(("equals", "not_equals", "in", "not_in"))
        ):
            if not value.is_integer():
                raise InvalidParameter(
                    f"{where}: {what} must be a whole number for metric type {dtype}, got {_excerpt(value)}"
                )
            value = int(value)
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise InvalidParameter(f"{where}: {what} must be text for metric type {dtype}, got {_excerpt(value)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise InvalidParameter(
                f"{where}: {what} must be true or false for metric type {dtype}, got {_excerpt(value)}"
            )
        return value
    raise AssertionError(kind)


def _operand(op: str, value: Any, kind: str, dtype: pa.DataType, where: str) -> Any:
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise InvalidParameter(f"{where}: between takes [low, high], got {_excerpt(value)}")
        lo, hi = (_scalar(v, kind, dtype, where, "between bounds") for v in value)
        if lo > hi:
            raise InvalidParameter(f"{where}: between [{_excerpt(lo)}, {_excerpt(hi)}]: low is above high")
        return (lo, hi)
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise InvalidParameter(f"{where}: {op} takes a non-empty list, got {_excerpt(value)}")
        return tuple(_scalar(v, kind, dtype, where, f"{op} items") for v in value)
    if op in ("is_true", "is_false"):
        if value is not True and value is not None:
            raise InvalidParameter(
                f"{where}: write '{op}: true' (or use equals: true|false), got {op}: {_excerpt(value)}"
            )
        return True
    if op == "empty":
        if not isinstance(value, bool):
            raise InvalidParameter(f"{where}: empty takes true or false, got {_excerpt(value)}")
        return value
    if op in ("contains", "not_contains"):
        return _scalar(value, _kind(dtype.value_type), dtype.value_type, where, op)
    return _scalar(value, kind, dtype, where, op)
