"""The Audio Format feature's request options (``audioFormatConfig``), parsed once for every caller.

``audioqc format --alarms FILE.json`` and the service's ``POST /v1/videos:annotate`` accept the
same shapes, so they share this parser: a request body ``{"videoContext": {"audioFormatConfig":
{...}}}``, an ``{"audioFormatConfig": {...}}``, an ``{"alarmSettings": {...}, "compressed_channels":
[...]}`` or a bare ``alarmSettings`` object.
"""

from __future__ import annotations

from typing import Any

from audiolib.channel_format import AlarmSettings
from audiolib.errors import InvalidParameter

__all__ = ["parse_audio_format_config", "parse_compressed_channels"]


def parse_compressed_channels(value: Any, where: str) -> tuple[int, ...]:
    """``compressed_channels`` as a tuple of channel indices (>= 0).

    Raises
    ------
    InvalidParameter
        Naming ``where`` (the option or field the value came from) and the value.
    """
    if not isinstance(value, list) or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
                                              for c in value):
        raise InvalidParameter(f"{where}: compressed_channels={value!r} must be a list of channel indices")
    return tuple(value)


def parse_audio_format_config(data: Any, where: str, *,
                              enabled_default: bool = True) -> tuple[AlarmSettings, tuple[int, ...]]:
    """The alarm settings and the allowed compressed channels of an Audio Format request.

    Parameters
    ----------
    data : object
        Parsed JSON in any of the shapes the module names.
    where : str
        What the data came from (``--alarms FILE.json``, a request field), named in errors.
    enabled_default : bool
        ``enabled`` when the settings leave it out: a settings file given on the command line is
        meant to run (True); the reference's default is false.

    Returns
    -------
    (AlarmSettings, tuple of int)
        The settings and the channels of ``compressed_channels`` (read beside ``alarmSettings``).

    Raises
    ------
    InvalidParameter
        A malformed field, naming it.
    """
    if isinstance(data, dict) and "videoContext" in data:
        data = data["videoContext"]
    if isinstance(data, dict) and "audioFormatConfig" in data:
        data = data["audioFormatConfig"]
    compressed: tuple[int, ...] = ()
    if isinstance(data, dict) and "alarmSettings" in data:
        compressed = parse_compressed_channels(data.get("compressed_channels", []), where)
        data = data["alarmSettings"]
    if isinstance(data, dict) and "enabled" not in data:
        data = {**data, "enabled": enabled_default}
    return AlarmSettings.from_dict(data), compressed
