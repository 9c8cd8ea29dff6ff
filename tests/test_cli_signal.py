"""The signal-diagnostics commands: `audioqc format`, and `diagnose` computing every block in
one pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiolib import io
from audiolib.diagnose import BLOCKS, diagnose
from conftest import SR, run_cli

cli = run_cli


@pytest.fixture(scope="module")
def changing(tmp_path_factory) -> str:
    """2 s silence, 3 s mono (L = R), 4 s stereo (independent noise)."""
    rng = np.random.default_rng(2)
    y = np.zeros((2, 9 * SR), np.float32)
    mono = 0.1 * rng.standard_normal(3 * SR)
    y[:, 2 * SR:5 * SR] = mono
    y[:, 5 * SR:] = 0.1 * rng.standard_normal((2, 4 * SR))
    path = tmp_path_factory.mktemp("fmt") / "changing.wav"
    io.write(str(path), y, SR, codec="pcm_s24le", sample_fmt="s32")
    return str(path)


def seconds(offset: str) -> float:
    assert offset.endswith("s")
    return float(offset[:-1])


def test_format_command_prints_the_reference_shape(changing):
    proc = cli("format", changing)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"audioFormatAnnotations", "compressedChannels", "alarms"}
    segs = [(a["audioFormat"], seconds(a["startTimeOffset"]), seconds(a["endTimeOffset"]))
            for a in out["audioFormatAnnotations"]]
    assert [s[0] for s in segs] == ["silence", "mono", "stereo"]
    assert segs[1][1] == pytest.approx(2.0, abs=0.1) and segs[2][1] == pytest.approx(5.0, abs=0.1)
    assert segs[-1][2] == pytest.approx(9.0)
    assert all(a["startTimeOffset"].count(".") == 1 and len(a["startTimeOffset"].split(".")[1]) == 7
               for a in out["audioFormatAnnotations"])  # 6 decimals + "s"


def test_format_alarms_from_file(changing, tmp_path):
    settings = tmp_path / "alarms.json"
    # Only stereo ("Stereo Pairs" bit, 32) allowed: silence and mono are violations.
    settings.write_text(json.dumps({"alarmSettings": {"enabled": True, "sensitivity": 1.0,
                                                      "secsInAlarmDuration": 1, "allowableAudioFormat": 32}}))
    out = json.loads(cli("format", changing, "--alarms", str(settings)).stdout)
    assert len(out["alarms"]) == 1
    alarm = out["alarms"][0]
    assert seconds(alarm["startTimeOffset"]) == pytest.approx(1.0, abs=0.11)
    assert seconds(alarm["endTimeOffset"]) == pytest.approx(5.0, abs=0.11)
    assert "not allowed" in alarm["reason"]


@pytest.mark.parametrize(
    "content, words",
    [
        ('{"sensitivity": 2}', "sensitivity=2"),
        ('{"bogus": 1}', "unknown key(s) 'bogus'"),
        ("not json", "not JSON"),
    ],
)
def test_format_bad_alarm_files(changing, tmp_path, content, words):
    settings = tmp_path / "alarms.json"
    settings.write_text(content)
    proc = cli("format", changing, "--alarms", str(settings))
    assert proc.returncode == 1 and words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_format_bad_channel_list(changing):
    proc = cli("format", changing, "--compressed-channels", "0,a")
    assert proc.returncode == 1 and "--compressed-channels='0,a'" in proc.stderr


def test_diagnose_has_every_block_from_one_pass(changing):
    result = diagnose(changing)
    assert tuple(result.to_dict())[:-1] == BLOCKS  # + "decode"
    out = json.loads(cli("diagnose", changing).stdout)
    assert list(out) == [*BLOCKS, "decode"]
    assert out["silence"]["at_beginning"] == pytest.approx(2.0, abs=0.01)
    assert out["audio_format"]["audioFormatAnnotations"][0]["audioFormat"] == "silence"


def test_format_alarms_in_the_reference_request_shape(changing, tmp_path):
    """The reference's whole request body works as the alarms file: its compressed_channels count."""
    settings = tmp_path / "request.json"
    settings.write_text(json.dumps({"videoContext": {"audioFormatConfig": {
        "compressed_channels": [0, 1],
        "alarmSettings": {"enabled": True, "sensitivity": 1.0, "secsInAlarmDuration": 1,
                          "allowableAudioFormat": 255, "allowCompressedAudio": 0}}}}))
    proc = cli("format", changing, "--alarms", str(settings))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["alarms"] == []  # every format allowed, nothing compressed
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"audioFormatConfig": {"compressed_channels": ["x"], "alarmSettings": {}}}))
    proc = cli("format", changing, "--alarms", str(bad))
    assert proc.returncode == 1 and "compressed_channels=['x']" in proc.stderr
