"""QC policies: loading and validation, presets, and verdicts on generated files with known levels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from audiolib.diagnose import diagnose
from audiolib.errors import InvalidParameter
from audiolib.io import write
from audiolib.loudness import measure
from audioqc import policy as policy_mod
from audioqc.policy import (
    REASON_KEYS,
    Policy,
    Rule,
    Verdict,
    evaluate,
    list_presets,
    load_policy,
    parse_policy,
    policy_from_dict,
)
from audioqc.report import flatten, metric_columns, metric_type

SR = 48000
PRESETS = ("ebu-r128", "atsc-a85", "streaming-music", "podcast", "film-dialogue", "clean-speech")
PRESET_DIR = Path(__file__).resolve().parent.parent / "data" / "policies"


def pink_noise(seconds: float, *, sr: int = SR, channels: int = 2, seed: int = 7) -> np.ndarray:
    """Seeded noise with a 1/f power spectrum (shaped in the frequency domain), peak 0.5."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    spec = np.fft.rfft(rng.standard_normal((channels, n)), axis=1)
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[:, 1:] /= np.sqrt(f[1:])
    spec[:, 0] = 0.0  # no DC
    y = np.fft.irfft(spec, n, axis=1)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def at_lufs(y: np.ndarray, target: float, sr: int = SR) -> np.ndarray:
    """``y`` scaled to an integrated loudness of ``target`` LUFS (BS.1770 via audiolib)."""
    measured = measure(y, sr, true_peak=False).integrated_lufs
    assert measured is not None
    gain_db = target - measured
    return (y * 10 ** (gain_db / 20)).astype(np.float32)


def row_of(path: Path) -> dict:
    return flatten(diagnose(str(path)))


@pytest.fixture(scope="module")
def compliant_row(tmp_path_factory) -> dict:
    """Stereo pink noise at -23 LUFS, 16-bit: every EBU R128 rule holds."""
    path = tmp_path_factory.mktemp("policy") / "r128.wav"
    write(str(path), at_lufs(pink_noise(6.0), -23.0), SR, codec="pcm_s16le", sample_fmt="s16")
    return row_of(path)


@pytest.fixture(scope="module")
def loud_clipped_row(tmp_path_factory) -> dict:
    """The same noise pushed to about -5 LUFS and hard-clipped at full scale."""
    path = tmp_path_factory.mktemp("policy") / "loud.wav"
    y = np.clip(at_lufs(pink_noise(6.0), -3.0), -1.0, 1.0)
    write(str(path), y, SR, codec="pcm_s16le", sample_fmt="s16")
    return row_of(path)


def write_policy(tmp_path: Path, data, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def rule(**kw) -> dict:
    return {"severity": "fail", "advice": "do something", **kw}


def one_rule_policy(**kw) -> Policy:
    return policy_from_dict({"name": "t", "rules": [rule(**kw)]})


# ----------------------------------------------------------------------------------------------
# presets


def test_every_preset_is_listed_and_loads_with_a_cited_source():
    assert set(PRESETS) <= set(list_presets())
    for name in PRESETS:
        p = load_policy(name)
        assert isinstance(p, Policy) and p.name and p.description and p.source
        assert p.rules and all(isinstance(r, Rule) for r in p.rules)
        assert {r.severity for r in p.rules} <= {"fail", "warn"}
        assert all(r.advice.strip() for r in p.rules)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_metrics_exist_in_the_report_schema(name):
    # Read the YAML directly (not through the loader) so a schema change that renames or drops a
    # column a preset uses fails here, naming the preset and the column.
    raw = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())
    columns = set(metric_columns())
    for r in raw["rules"]:
        assert r["metric"] in columns, f"preset {name}: metric {r['metric']} is not a report column"
        metric_type(r["metric"])


def test_preset_values_match_the_delivery_targets():
    def bounds(name: str, metric: str):
        (r,) = [r for r in load_policy(name).rules if r.metric == metric]
        return r.op, r.operand, r.severity

    # /work/shared/reference/README.md "Common delivery targets" and each preset's source.
    assert bounds("ebu-r128", "loudness_integrated_lufs") == ("between", (-24.0, -22.0), "fail")
    assert bounds("ebu-r128", "loudness_true_peak_dbtp") == ("max", -1.0, "fail")
    assert bounds("atsc-a85", "loudness_integrated_lufs") == ("between", (-26.0, -22.0), "fail")
    assert bounds("atsc-a85", "loudness_true_peak_dbtp") == ("max", -2.0, "fail")
    assert bounds("streaming-music", "loudness_integrated_lufs") == ("between", (-15.0, -13.0), "warn")
    assert bounds("streaming-music", "loudness_true_peak_dbtp") == ("max", -1.0, "fail")
    assert bounds("podcast", "loudness_integrated_lufs") == ("between", (-17.0, -15.0), "fail")
    assert bounds("podcast", "loudness_true_peak_dbtp") == ("max", -1.0, "fail")
    assert bounds("film-dialogue", "loudness_speech_integrated_lufs") == ("between", (-29.0, -25.0), "fail")
    assert bounds("film-dialogue", "loudness_true_peak_dbtp") == ("max", -2.0, "fail")
    assert bounds("clean-speech", "bandwidth_hz") == ("min", 7000.0, "fail")
    assert bounds("clean-speech", "media_info_audio_sample_rate_hz") == ("min", 16000, "fail")
    for name in PRESETS:
        assert bounds(name, "clipping_events")[:2] == ("equals", 0)
        assert bounds(name, "dropouts_count")[:2] == ("equals", 0)


def test_preset_by_path_and_by_name_are_the_same():
    assert load_policy(PRESET_DIR / "podcast.yaml") == load_policy("podcast")
    assert load_policy(str(PRESET_DIR / "podcast.yaml")) == load_policy("podcast")


def test_unknown_preset_suggests_close_names():
    with pytest.raises(InvalidParameter, match=r"unknown policy preset 'ebu-r218'.*ebu-r128"):
        load_policy("ebu-r218")


def test_presets_found_in_installed_package_data(tmp_path, monkeypatch):
    # A wheel ships the presets as package data audioqc/policies/*.yaml; they are found through
    # importlib.resources and take precedence over the repository copy of the same name.
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "house.yaml").write_text(yaml.safe_dump(
        {"name": "House", "rules": [rule(metric="clipping_events", equals=0)]}))
    (tmp_path / "policies" / "podcast.yaml").write_text(yaml.safe_dump(
        {"name": "Packaged podcast", "rules": [rule(metric="clipping_events", equals=0)]}))
    monkeypatch.setattr(policy_mod.resources, "files", lambda package: tmp_path)
    assert "house" in list_presets() and "ebu-r128" in list_presets()
    assert load_policy("house").name == "House"
    assert load_policy("podcast").name == "Packaged podcast"


# ----------------------------------------------------------------------------------------------
# verdicts on generated files


def test_compliant_file_passes_ebu_r128(compliant_row):
    assert compliant_row["loudness_integrated_lufs"] == pytest.approx(-23.0, abs=0.1)
    v = evaluate(load_policy("ebu-r128"), compliant_row)
    assert v == Verdict("pass", ())
    assert v.passed and not v.failed


def test_loud_clipped_file_fails_ebu_r128_with_the_right_reasons(loud_clipped_row):
    v = evaluate(load_policy("ebu-r128"), loud_clipped_row)
    assert v.verdict == "fail" and v.failed
    by_metric = {r["metric"]: r for r in v.reasons}
    assert set(by_metric) == {"loudness_integrated_lufs", "loudness_true_peak_dbtp", "clipping_events"}
    for r in v.reasons:
        assert tuple(r) == REASON_KEYS
        assert r["severity"] == "fail"
    lufs = by_metric["loudness_integrated_lufs"]
    assert lufs["rule"] == "between [-24.0, -22.0]"
    assert lufs["value"] > -10 and "-23" in lufs["advice"]
    assert by_metric["loudness_true_peak_dbtp"]["value"] > -1.0
    assert by_metric["loudness_true_peak_dbtp"]["rule"] == "<= -1.0"
    assert by_metric["clipping_events"]["value"] > 0
    assert by_metric["clipping_events"]["rule"] == "== 0"


def test_one_file_under_every_preset(compliant_row):
    # -23 LUFS, true peak about -11 dBTP, no defects: compliant for broadcast and datasets; off the
    # level target of the others, with the severity each preset gives its level rule.
    expected = {
        "ebu-r128": ("pass", set()),
        "atsc-a85": ("pass", set()),
        "clean-speech": ("warn", {"speech_percentage"}),  # noise is not speech
        "streaming-music": ("warn", {"loudness_integrated_lufs"}),
        "podcast": ("fail", {"loudness_integrated_lufs"}),
        "film-dialogue": ("warn", {"loudness_speech_integrated_lufs"}),  # no dialogue in noise
    }
    for name, (verdict, metrics) in expected.items():
        v = evaluate(load_policy(name), compliant_row)
        assert (v.verdict, {r["metric"] for r in v.reasons}) == (verdict, metrics), name


@pytest.mark.parametrize("name, target", [("atsc-a85", -24.0), ("streaming-music", -14.0), ("podcast", -16.0)])
def test_noise_at_each_target_passes_its_preset(tmp_path, name, target):
    path = tmp_path / f"{name}.wav"
    write(str(path), at_lufs(pink_noise(6.0), target), SR, codec="pcm_s16le", sample_fmt="s16")
    v = evaluate(load_policy(name), row_of(path))
    assert v.verdict == "pass", v.reasons


def test_film_dialogue_without_dialogue_warns(compliant_row):
    # Pink noise: no speech, so no dialogue-gated loudness: a warning (when_missing), not a pass.
    v = evaluate(load_policy("film-dialogue"), compliant_row)
    assert v.verdict == "warn"
    assert [(r["metric"], r["severity"]) for r in v.reasons] == [("loudness_speech_integrated_lufs", "warn")]


@pytest.mark.parametrize("dialogue_lufs, verdict", [(-27.0, "pass"), (-22.0, "fail")])
def test_film_dialogue_fails_on_dialogue_gated_loudness(tmp_path, dialogue_lufs, verdict):
    """Dialogue at -27 (or -22) LUFS and a loud effects passage without speech: the level-gated
    loudness is the same in both files' league, the dialogue-gated one decides."""
    from conftest import espeak_speech

    room = np.random.default_rng(3).standard_normal(int(20.0 * SR)) * 3e-4  # room tone: no exact-zero pauses
    speech = espeak_speech(20.0) + room.astype(np.float32)
    dialogue = at_lufs(np.stack([speech, speech]), dialogue_lufs)
    effects = at_lufs(pink_noise(8.0), dialogue_lufs + 6.0) * 0.5
    path = tmp_path / "mix.wav"
    write(str(path), np.concatenate((dialogue, effects), axis=1), SR, codec="pcm_s24le", sample_fmt="s32")
    row = row_of(path)
    assert abs(row["loudness_speech_integrated_lufs"] - dialogue_lufs) < 1.0
    v = evaluate(load_policy("film-dialogue"), row)
    assert v.verdict == verdict, v.reasons
    if verdict == "fail":
        assert [r["metric"] for r in v.reasons] == ["loudness_speech_integrated_lufs"]


def test_clean_speech_rejects_upsampled_narrowband_mono_and_skips_phase(tmp_path):
    # Narrowband (8 kHz) audio resampled to 16 kHz mono: the sample rate passes but the effective
    # bandwidth (about 4 kHz) fails, the upsampling is flagged (warn), and mono has no channel pair,
    # so the phase rule passes (when_missing: pass).
    import soxr

    y8 = pink_noise(4.0, sr=8000, channels=1)
    y = np.ascontiguousarray(soxr.resample(y8.T, 8000, 16000).T, dtype=np.float32)
    path = tmp_path / "narrow.wav"
    write(str(path), at_lufs(y, -23.0, 16000), 16000, codec="pcm_s16le", sample_fmt="s16")
    row = row_of(path)
    assert row["phase_front_out_of_phase"] is None
    v = evaluate(load_policy("clean-speech"), row)
    assert v.verdict == "fail"
    got = {r["metric"]: r["severity"] for r in v.reasons}
    assert got == {"bandwidth_hz": "fail", "bandwidth_upsampled_suspect": "warn", "speech_percentage": "warn"}
    assert next(r for r in v.reasons if r["metric"] == "bandwidth_hz")["value"] < 4500


def test_clean_speech_warns_on_noisy_speech(tmp_path):
    """The perceptual rules: speech passes the speech, music and SNR rules; the same speech with
    white noise 10 dB under it warns on the SNR (and the noise score falls)."""
    from conftest import espeak_speech
    from testing.material.media import with_noise

    speech = espeak_speech(20.0)
    rows = {}
    for name, y in (("clean", speech), ("noisy", with_noise(speech, "white", 10.0, np.random.default_rng(5)))):
        path = tmp_path / f"{name}.wav"
        write(str(path), at_lufs(np.stack([y, y]), -23.0), SR, codec="pcm_s24le", sample_fmt="s32")
        rows[name] = row_of(path)
    perceptual = {"speech_percentage", "music_percentage", "noise_score_snr_db"}
    policy = load_policy("clean-speech")
    clean = {r["metric"] for r in evaluate(policy, rows["clean"]).reasons}
    noisy = {r["metric"]: r for r in evaluate(policy, rows["noisy"]).reasons}
    assert not clean & perceptual, clean
    assert set(noisy) & perceptual == {"noise_score_snr_db"}, noisy
    assert noisy["noise_score_snr_db"]["severity"] == "warn" and noisy["noise_score_snr_db"]["value"] < 15
    assert rows["noisy"]["noise_score_average"] < rows["clean"]["noise_score_average"]


def test_error_rows_are_not_evaluated():
    with pytest.raises(InvalidParameter, match="status 'error'"):
        evaluate(load_policy("ebu-r128"), {"status": "error", "error": "x: decode error", "source_url": "x"})


# ----------------------------------------------------------------------------------------------
# rule semantics


def test_warn_and_fail_precedence():
    p = policy_from_dict({"name": "t", "rules": [
        rule(metric="clipping_events", equals=0, severity="warn"),
        rule(metric="dropouts_count", equals=0, severity="fail"),
    ]})
    assert evaluate(p, {"clipping_events": 0, "dropouts_count": 0}).verdict == "pass"
    assert evaluate(p, {"clipping_events": 3, "dropouts_count": 0}).verdict == "warn"
    assert evaluate(p, {"clipping_events": 0, "dropouts_count": 2}).verdict == "fail"
    both = evaluate(p, {"clipping_events": 3, "dropouts_count": 2})
    assert both.verdict == "fail"
    # every rule not met is reported, in rule order, not only the worst one
    assert [(r["metric"], r["severity"], r["value"]) for r in both.reasons] == [
        ("clipping_events", "warn", 3), ("dropouts_count", "fail", 2)]


def test_between_bounds_are_inclusive():
    p = one_rule_policy(metric="loudness_integrated_lufs", between=[-24.0, -22.0])
    for value, verdict in ((-24.0, "pass"), (-22.0, "pass"), (-23.0, "pass"),
                           (-24.0001, "fail"), (-21.9999, "fail")):
        assert evaluate(p, {"loudness_integrated_lufs": value}).verdict == verdict, value


def test_min_max_equals_in():
    cases = [
        (dict(metric="loudness_true_peak_dbtp", max=-1.0), -1.0, -0.9),
        (dict(metric="media_info_audio_sample_rate_hz", min=16000), 16000, 8000),
        (dict(metric="media_info_audio_codec", equals="pcm_s16le"), "pcm_s16le", "mp3"),
        (dict(metric="media_info_audio_codec", not_equals="mp3"), "flac", "mp3"),
        (dict(metric="media_info_audio_sample_rate_hz", **{"in": [44100, 48000]}), 48000, 22050),
        (dict(metric="media_info_audio_codec", not_in=["mp3", "aac"]), "flac", "aac"),
        (dict(metric="bandwidth_upsampled_suspect", equals=False), False, True),
        (dict(metric="bandwidth_upsampled_suspect", is_false=True), False, True),
        (dict(metric="silence_mono", is_true=None), True, False),
    ]
    for spec, good, bad in cases:
        p = one_rule_policy(**spec)
        assert evaluate(p, {spec["metric"]: good}).verdict == "pass", spec
        assert evaluate(p, {spec["metric"]: bad}).verdict == "fail", spec


def test_booleans_are_not_numbers():
    p = one_rule_policy(metric="bandwidth_upsampled_suspect", equals=False)
    assert evaluate(p, {"bandwidth_upsampled_suspect": 0}).verdict == "fail"


def test_list_metric_contains_not_contains_empty():
    contains = one_rule_policy(metric="audio_format_labels", contains="stereo")
    assert evaluate(contains, {"audio_format_labels": ["mono", "stereo"]}).verdict == "pass"
    v = evaluate(contains, {"audio_format_labels": ["5.1"]})
    assert v.verdict == "fail" and v.reasons[0]["rule"] == "contains 'stereo'"
    assert v.reasons[0]["value"] == ["5.1"]
    absent = one_rule_policy(metric="dc_offset_flagged", not_contains="FL")
    assert evaluate(absent, {"dc_offset_flagged": ["FR"]}).verdict == "pass"
    assert evaluate(absent, {"dc_offset_flagged": ["FL"]}).verdict == "fail"
    empty = one_rule_policy(metric="silence_silent_channels", empty=True)
    assert evaluate(empty, {"silence_silent_channels": []}).verdict == "pass"
    assert evaluate(empty, {"silence_silent_channels": ["FR"]}).verdict == "fail"


def test_list_metric_on_a_real_row(compliant_row):
    p = one_rule_policy(metric="audio_format_labels", contains="stereo")
    assert compliant_row["audio_format_labels"] == ["stereo"]
    assert evaluate(p, compliant_row).verdict == "pass"


@pytest.mark.parametrize("when_missing, verdict", [(None, "warn"), ("warn", "warn"), ("fail", "fail"),
                                                    ("pass", "pass")])
def test_when_missing(when_missing, verdict):
    spec = dict(metric="loudness_integrated_lufs", between=[-24.0, -22.0], advice="Normalise to -23 LUFS.")
    if when_missing is not None:
        spec["when_missing"] = when_missing
    p = one_rule_policy(**spec)
    for row in ({"loudness_integrated_lufs": None}, {"loudness_integrated_lufs": float("nan")}, {}):
        v = evaluate(p, row)
        assert v.verdict == verdict
        if verdict == "pass":
            assert v.reasons == ()
        else:
            (r,) = v.reasons
            assert r["value"] is None and r["severity"] == verdict
            assert "could not be measured" in r["advice"] and "Normalise to -23 LUFS." in r["advice"]
            assert r["rule"].endswith("(not measured)")


def test_reasons_fit_the_report_schema(loud_clipped_row):
    import pyarrow as pa

    from audioqc.report import RunInfo, make_row, schema

    v = evaluate(load_policy("ebu-r128"), loud_clipped_row)
    row = make_row(RunInfo.new("t"), "x.wav", etag=None, mtime=None, size_bytes=1, verdict=v.verdict,
                   reasons=v.reasons)
    table = pa.Table.from_pylist([row], schema=schema())
    assert table.column("verdict").to_pylist() == ["fail"]
    assert len(table.column("verdict_reasons").to_pylist()[0]) == 3


# ----------------------------------------------------------------------------------------------
# validation: every problem is an InvalidParameter naming the file


def _error(tmp_path: Path, data) -> str:
    path = write_policy(tmp_path, data)
    with pytest.raises(InvalidParameter) as exc:
        load_policy(path)
    message = str(exc.value)
    assert str(path) in message
    return message


def test_unknown_metric_is_an_error_with_suggestions(tmp_path):
    msg = _error(tmp_path, {"name": "t", "rules": [rule(metric="loudness_integrated_lfus", max=-1)]})
    assert "unknown metric 'loudness_integrated_lfus'" in msg and "loudness_integrated_lufs" in msg


def test_unknown_rule_key(tmp_path):
    msg = _error(tmp_path, {"name": "t", "rules": [rule(metric="clipping_events", equals=0, severty="warn")]})
    assert "unknown key" in msg and "'severty'" in msg and "severity" in msg


def test_unknown_policy_key(tmp_path):
    assert "unknown key" in _error(tmp_path, {"name": "t", "rulez": [], "rules": [
        rule(metric="clipping_events", equals=0)]})


@pytest.mark.parametrize("spec, needle", [
    (dict(metric="media_info_audio_codec", between=[1, 2]), "'between' does not apply to metric type string"),
    (dict(metric="media_info_audio_codec", max=3), "'max' does not apply"),
    (dict(metric="loudness_integrated_lufs", contains=1.0), "'contains' does not apply"),
    (dict(metric="loudness_integrated_lufs", equals="loud"), "must be a finite number"),
    (dict(metric="loudness_integrated_lufs", max=True), "must be a finite number"),
    (dict(metric="loudness_integrated_lufs", between=[-22.0, -24.0]), "low is above high"),
    (dict(metric="loudness_integrated_lufs", between=[-22.0]), "between takes [low, high]"),
    (dict(metric="clipping_events", equals=0.5), "whole number"),
    (dict(metric="media_info_audio_codec", equals=5), "must be text"),
    (dict(metric="bandwidth_upsampled_suspect", equals="no"), "must be true or false"),
    (dict(metric="bandwidth_upsampled_suspect", is_true=False), "is_true: true"),
    (dict(metric="audio_format_labels", contains=5), "must be text"),
    (dict(metric="audio_format_labels", empty="yes"), "empty takes true or false"),
    (dict(metric="silence_intervals", empty=True), "nested columns take no rules"),
    (dict(metric="media_info_audio_codec", **{"in": []}), "non-empty list"),
    (dict(metric="clipping_events"), "exactly one condition"),
    (dict(metric="clipping_events", equals=0, max=1), "exactly one condition"),
])
def test_operand_must_fit_the_metric_type(tmp_path, spec, needle):
    msg = _error(tmp_path, {"name": "t", "rules": [rule(**spec)]})
    assert needle in msg and spec["metric"] in msg and "rule 1" in msg


@pytest.mark.parametrize("override, needle", [
    ({"severity": "error"}, "severity must be one of fail, warn"),
    ({"severity": None}, "severity must be one of"),
    ({"advice": ""}, "'advice'"),
    ({"when_missing": "ignore"}, "when_missing must be one of fail, warn, pass"),
])
def test_bad_severity_advice_when_missing(tmp_path, override, needle):
    msg = _error(tmp_path, {"name": "t", "rules": [{**rule(metric="clipping_events", equals=0), **override}]})
    assert needle in msg


@pytest.mark.parametrize("data, needle", [
    ({"name": "t", "rules": []}, "non-empty list"),
    ({"name": "t"}, "non-empty list"),
    ({"name": "t", "rules": ["clipping_events == 0"]}, "a rule is a mapping"),
    ({"name": "t", "rules": [{"equals": 0, "severity": "fail", "advice": "a"}]}, "'metric'"),
    ("- just\n- a list\n", "a policy is a mapping"),
    ("", "a policy is a mapping"),
    ("name: t\nrules: [\n  - metric: x\n", "malformed YAML"),
    ("name: t\nrules:\n  - metric: clipping_events\n    advice: a: b\n", "malformed YAML"),
    ({"name": 5, "rules": [rule(metric="clipping_events", equals=0)]}, "name must be text"),
])
def test_malformed_policies(tmp_path, data, needle):
    assert needle in _error(tmp_path, data)


def test_missing_file_is_an_invalid_parameter(tmp_path):
    with pytest.raises(InvalidParameter, match="policy file not found"):
        load_policy(tmp_path / "nope.yaml")


def test_second_rule_is_named_in_the_message(tmp_path):
    msg = _error(tmp_path, {"name": "t", "rules": [rule(metric="clipping_events", equals=0),
                                                   rule(metric="dropout_count", equals=0)]})
    assert "rule 2 (dropout_count)" in msg and "dropouts_count" in msg


def test_name_defaults_to_the_file_stem(tmp_path):
    path = write_policy(tmp_path, {"rules": [rule(metric="clipping_events", equals=0)]}, "house-style.yaml")
    p = load_policy(path)
    assert p.name == "house-style" and p.metrics == ("clipping_events",)


def test_parse_policy_text_names_its_source():
    with pytest.raises(InvalidParameter, match=r"^inline: malformed YAML"):
        parse_policy("rules: [", source="inline")


# ----------------------------------------------------------------------------------------------
# remedies


REMEDY_POLICY = """
name: remedies
rules:
  - metric: loudness_integrated_lufs
    between: [-24.0, -22.0]
    severity: fail
    advice: normalise
    remedy: loudness
  - metric: noise_score_snr_db
    min: 20.0
    severity: warn
    advice: denoise
    remedy: denoise
  - metric: clipping_events
    equals: 0
    severity: fail
    advice: re-record
remedies:
  loudness: {target_lufs: -23.0, true_peak_max_dbtp: -1.0}
  denoise: {amount: 100}
"""


def test_remedies_parse_and_the_failed_rules_name_them_in_order():
    p = parse_policy(REMEDY_POLICY, source="r.yaml")
    assert [r.text for _, r in p.remedies] == [
        "denoise(amount=100)",
        "loudness(target_lufs=-23.0, true_peak_max_dbtp=-1.0)",
    ]
    v = evaluate(p, {"loudness_integrated_lufs": -18.0, "noise_score_snr_db": 10.0, "clipping_events": 3})
    assert [r["remedy"] for r in v.reasons] == ["loudness", "denoise", None]
    assert [r.name for r in p.remedies_for(v)] == ["denoise", "loudness"]  # denoise first
    only_clipping = evaluate(p, {"loudness_integrated_lufs": -23.0, "noise_score_snr_db": 30.0, "clipping_events": 3})
    assert p.remedies_for(only_clipping) == ()  # no remedy repairs clipping
    assert p.remedies_for(evaluate(p, {"loudness_integrated_lufs": -23.0, "noise_score_snr_db": 30.0,
                                       "clipping_events": 0})) == ()


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["rules"][0].update(remedy="loudnes"), "unknown remedy 'loudnes' (did you mean 'loudness'?)"),
    (lambda d: d["remedies"].update(declip={}), "unknown remedy 'declip'"),
    (lambda d: d["remedies"]["loudness"].pop("target_lufs"), "needs target_lufs"),
    (lambda d: d.pop("remedies"), "needs 'remedies: {loudness: {target_lufs: ...}}'"),
    (lambda d: d["remedies"]["loudness"].update(target_lufs=-90.0), "target_lufs=-90.0 must be from -70 to 0"),
    (lambda d: d["remedies"]["loudness"].update(true_peak_max_dbtp="loud"), "true_peak_max_dbtp must be a number"),
    (lambda d: d["remedies"]["loudness"].update(gating="dialogue"), "gating='dialogue'"),
    (lambda d: d["remedies"]["denoise"].update(amount=0), "amount=0 must be an integer from 1 to 100"),
    (lambda d: d["remedies"]["denoise"].update(amount=50.5), "amount=50.5"),
    (lambda d: d["remedies"]["denoise"].update(strength=3), "unknown parameter(s) 'strength'"),
    (lambda d: d["remedies"]["denoise"].update(format="doc"), "format='doc' is not an output format"),
    (lambda d: d.update(remedies=["denoise"]), "'remedies' is a mapping"),
])
def test_bad_remedies_are_clear_errors_naming_the_file(edit, words):
    data = yaml.safe_load(REMEDY_POLICY)
    edit(data)
    with pytest.raises(InvalidParameter) as exc:
        policy_from_dict(data, source="bad.yaml")
    assert str(exc.value).startswith("bad.yaml:")
    assert words in str(exc.value)


def test_denoise_defaults_and_speech_gating_follows_the_rule():
    data = yaml.safe_load(REMEDY_POLICY)
    data["remedies"].pop("denoise")
    assert policy_from_dict(data, source="x").remedy("denoise").options == {"amount": 100}
    data["rules"][0]["metric"] = "loudness_speech_integrated_lufs"
    assert policy_from_dict(data, source="x").remedy("loudness").options["gating"] == "speech"


@pytest.mark.parametrize("name, target, ceiling", [("ebu-r128", -23.0, -1.0), ("atsc-a85", -24.0, -2.0),
                                                   ("podcast", -16.0, -1.0), ("streaming-music", -14.0, -1.0),
                                                   ("film-dialogue", -27.0, -2.0)])
def test_presets_remedy_loudness_with_their_own_target_and_ceiling(name, target, ceiling):
    p = load_policy(name)
    opts = p.remedy("loudness").options
    assert (opts["target_lufs"], opts["true_peak_max_dbtp"]) == (target, ceiling)
    for rule in p.rules:
        if rule.metric.startswith(("clipping", "dropouts", "bandwidth", "media_info")):
            assert rule.remedy is None, (name, rule.metric)  # no honest automatic repair
        if rule.metric in ("loudness_integrated_lufs", "loudness_speech_integrated_lufs", "loudness_true_peak_dbtp"):
            assert rule.remedy == "loudness"


def test_speech_presets_denoise_their_noise_and_quality_rules():
    for name in ("clean-speech", "podcast"):
        p = load_policy(name)
        assert {r.metric for r in p.rules if r.remedy == "denoise"} >= {"noise_score_snr_db"}
        assert p.remedy("denoise").options["amount"] == 100
    assert {r.metric for r in load_policy("clean-speech").rules if r.remedy == "denoise"} == {
        "noise_score_snr_db", "quality_score_average"}
