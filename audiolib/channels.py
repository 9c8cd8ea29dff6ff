"""Channel layouts: FFmpeg's default layout for a channel count, and its channel names."""

from __future__ import annotations

from collections.abc import Iterable

#: Names FFmpeg (and files) give a low-frequency effects channel.
LFE_NAMES = frozenset({"LFE", "LFE1", "LFE2", "LOW_FREQUENCY", "LOW_FREQUENCY_2"})


def non_lfe_indices(channel_names: Iterable[str]) -> list[int]:
    """Indices of the channels that are not LFE (every channel if all are)."""
    names = list(channel_names)
    keep = [i for i, n in enumerate(names) if n.upper() not in LFE_NAMES]
    return keep or list(range(len(names)))


#: FFmpeg's default layout for each channel count (av_channel_layout_default) and its channels.
DEFAULT_LAYOUTS: dict[int, tuple[str, tuple[str, ...]]] = {
    1: ("mono", ("FC",)),
    2: ("stereo", ("FL", "FR")),
    3: ("2.1", ("FL", "FR", "LFE")),
    4: ("4.0", ("FL", "FR", "FC", "BC")),
    5: ("5.0(side)", ("FL", "FR", "FC", "SL", "SR")),
    6: ("5.1(side)", ("FL", "FR", "FC", "LFE", "SL", "SR")),
    7: ("6.1", ("FL", "FR", "FC", "LFE", "BC", "SL", "SR")),
    8: ("7.1", ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR")),
}


def default_layout(channels: int) -> tuple[str, tuple[str, ...]]:
    """``(layout name, channel names)`` FFmpeg assumes for ``channels`` when a file declares none."""
    if channels in DEFAULT_LAYOUTS:
        return DEFAULT_LAYOUTS[channels]
    return f"{channels} channels", tuple(f"ch{i}" for i in range(channels))
