"""The channel-format analyzer: per-segment format labels over time, compressed audio, alarms.
See docs/channel-format.md."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..channels import LFE_NAMES, default_layout
from ..errors import InvalidParameter
from .alarms import alarm_intervals
from .results import (
    _MONO,
    _PAIRS,
    _SILENCE,
    _STEREO,
    _STEREO_MONO,
    _STEREO_SAP,
    _STEREO_SURROUND,
    _SURROUND,
    _SURROUND_MONO,
    _SURROUND_SAP,
    _SURROUND_STEREO,
    LABELS,
    AlarmEvent,
    AlarmSettings,
    ChannelFormatResult,
    CompressedAudio,
    FormatSegment,
    _is_number,
)
from .st337 import _FILLER_TYPES, _LOSSLESS, _UNWRAPPED, _UNWRAPPED_NOTE, ST337_DATA_TYPES, _BurstRun, _find_bursts

#: Windows' statistics, one entry per window: (starts, counts, sums, products, diff energy).
_Windows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
#: An ST 337 burst: (frame, first channel, channel count, word bits, data_type).
_Burst = tuple[int, int, int, int, int]


def _shifted(bursts: list[_Burst], offset: int) -> list[_Burst]:
    """``bursts`` with their frames moved by ``offset``."""
    return [(f + offset, ch, count, bits, data_type) for f, ch, count, bits, data_type in bursts]

# ----------------------------------------------------------------------------------------------
# The analyzer
# ----------------------------------------------------------------------------------------------

class _Segmenter:
    """Runs of window labels -> segments; runs shorter than ``min_frames`` are absorbed."""

    def __init__(self, min_frames: int) -> None:
        self.min_frames = min_frames
        self.segments: list[list[int]] = []  # [label, start, end] frames
        self._run: list[int] | None = None
        self._head: list[int] | None = None  # a short first run, waiting for the next run

    def add(self, label: int, start: int, end: int) -> None:
        run = self._run
        if run is not None and run[0] == label:
            run[2] = end
            return
        self._close()
        self._run = [label, start, end]

    def _close(self) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        if self._head is not None:  # the start of the file was a flicker: it joins this run
            run[1], self._head = self._head[1], None
        short = run[2] - run[1] < self.min_frames
        if self.segments and (short or self.segments[-1][0] == run[0]):
            self.segments[-1][2] = run[2]
        elif short:
            self._head = run
        else:
            self.segments.append(run)

    def finish(self) -> list[list[int]]:
        self._close()
        if self._head is not None:  # the whole file is shorter than one segment
            self.segments.append(self._head)
            self._head = None
        return self.segments


class ChannelFormatAnalyzer:
    """Streaming channel-format analysis: ``push`` every block, then ``result``.

    Parameters
    ----------
    sample_rate : int
        Hz.
    channel_names : tuple of str
        FFmpeg channel names (their count is the channel count; an ``LFE`` among 6 channels
        makes them one 5.1 part).
    start_s : float
        File time of the first sample pushed, seconds.
    codec, container : str
        The decoder's codec name and the container kind (``io.probe``): decide whether ST 337
        words can survive the decode, and detect a WAV unwrapped by FFmpeg's demuxer.
    compressed_channels : tuple of int
        Channels on which compressed audio is allowed (the reference's ``compressed_channels``).
    alarms : AlarmSettings, optional
        Alarms to raise (none when absent or not enabled).
    window_s : float
        Analysis window, seconds.
    min_segment_s : float
        Shorter runs do not make segments, seconds.
    silence_dbfs : float
        RMS below which a channel is inactive, dBFS.
    mono_correlation : float
        |correlation| at or above which two channels carry the same signal.
    downmix_correlation : float
        |correlation| at or above which a mono pair carries the main programme (``... mono``
        rather than ``... sap``).
    lfe_max_hz : float
        A channel whose content lies below about this is LFE-like (8+ channels), Hz.
    max_burst_gap_s : float
        Bursts further apart start a new compressed-audio run, seconds.
    """

    def __init__(self, sample_rate: int, channel_names: tuple[str, ...], *, start_s: float = 0.0,
                 codec: str = "pcm_s16le", container: str = "wav", compressed_channels: tuple[int, ...] = (),
                 alarms: AlarmSettings | None = None, window_s: float = 0.1, min_segment_s: float = 0.5,
                 silence_dbfs: float = -60.0, mono_correlation: float = 0.99,
                 downmix_correlation: float = 0.5, lfe_max_hz: float = 150.0,
                 max_burst_gap_s: float = 0.25) -> None:
        if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
            raise InvalidParameter(f"sample_rate={sample_rate!r}: must be a positive integer (Hz)")
        self.channel_names = tuple(str(n) for n in channel_names)
        channels = len(self.channel_names)
        if channels < 1:
            raise InvalidParameter(f"channel_names={channel_names!r}: need at least one channel")
        if not (_is_number(start_s) and math.isfinite(start_s)):
            raise InvalidParameter(f"start_s={start_s!r}: must be a finite number of seconds")
        for name, value, low in (("window_s", window_s, 0.0), ("min_segment_s", min_segment_s, None),
                                 ("max_burst_gap_s", max_burst_gap_s, 0.0), ("lfe_max_hz", lfe_max_hz, 0.0)):
            if not (_is_number(value) and math.isfinite(value) and (value > low if low is not None else value >= 0)):
                raise InvalidParameter(f"{name}={value!r}: must be a positive number")
        for name, value in (("mono_correlation", mono_correlation), ("downmix_correlation", downmix_correlation)):
            if not (_is_number(value) and 0.0 <= value <= 1.0):
                raise InvalidParameter(f"{name}={value!r}: must be in 0..1")
        if not (_is_number(silence_dbfs) and silence_dbfs <= 0):
            raise InvalidParameter(f"silence_dbfs={silence_dbfs!r}: must be a level <= 0 dBFS")
        bad = [c for c in compressed_channels if not (isinstance(c, (int, np.integer)) and 0 <= c < channels)]
        if bad:
            raise InvalidParameter(f"compressed_channels={tuple(compressed_channels)!r}: channel(s) {bad} "
                                   f"outside 0..{channels - 1}")
        if alarms is not None and not isinstance(alarms, AlarmSettings):
            raise InvalidParameter(f"alarms={alarms!r}: must be an AlarmSettings")

        self.sample_rate = int(sample_rate)
        self.channels = channels
        self.start_s = float(start_s)
        self.codec = str(codec)
        self.container = str(container)
        self.compressed_channels = tuple(int(c) for c in compressed_channels)
        self.alarms = alarms
        self.window_frames = max(1, int(round(window_s * self.sample_rate)))
        self.window_s = self.window_frames / self.sample_rate
        self._var_floor = 10.0 ** (silence_dbfs / 10.0)
        self._mono_r = float(mono_correlation)
        self._downmix_r = float(downmix_correlation)
        # Mean square of the first difference of a unit-power sine at f: (2 sin(pi f / fs))^2.
        self._lfe_ratio = (2.0 * math.sin(math.pi * min(lfe_max_hz, self.sample_rate / 2) / self.sample_rate)) ** 2
        self._gap = max(1, int(round(max_burst_gap_s * self.sample_rate)))
        self._segmenter = _Segmenter(int(round(min_segment_s * self.sample_rate)))

        # Part layouts: ("kind", channels) with kind "single", "pair" or "5.1".
        self._lfe_probe = (3, 5) if channels >= 8 else ()
        self._lfe_hint: int | None = None
        self._layouts = {hint: self._parts(hint) for hint in (None, 3, 5)}

        # Window accumulator (a window straddling blocks).
        self._acc_n = 0
        self._acc_s = np.zeros(channels)
        self._acc_p = np.zeros((channels, channels))
        self._acc_d = np.zeros(channels)
        self._frames = 0  # frames pushed

        # ST 337 scanning.
        self._unwrapped = self.container.lower() == "wav" and self.codec.lower() in _UNWRAPPED
        scan = self.codec.startswith("pcm_") or self.codec in _LOSSLESS
        if not scan or self._unwrapped:
            self._modes: tuple[int, ...] = ()
        elif self.codec.startswith(("pcm_s16", "pcm_u16")):
            self._modes = (16,)  # 20/24-bit preambles have low bits a 16-bit sample cannot hold
        else:
            self._modes = (16, 20, 24)
        self._tail = np.zeros((channels, 0), dtype=np.float32)
        self._tail_start = 0
        self._open_runs: dict[tuple[tuple[int, ...], int], _BurstRun] = {}
        self._runs: list[_BurstRun] = []
        self._last_burst = np.full(channels, -(1 << 62), dtype=np.int64)

    # -- structure ------------------------------------------------------------------------------

    def _parts(self, hint: int | None) -> list[tuple[str, tuple[int, ...]]]:
        n = self.channels
        names = {name.upper() for name in self.channel_names}
        if n == 6 and names & LFE_NAMES:
            return [("5.1", tuple(range(6)))]
        parts: list[tuple[str, tuple[int, ...]]] = []
        start = 0
        if n >= 8 and hint == 3:
            parts.append(("5.1", tuple(range(6))))
            start = 6
        elif n >= 8 and hint == 5:
            parts += [("pair", (0, 1)), ("5.1", tuple(range(2, 8)))]
            start = 8
        for c in range(start, n - 1, 2):
            parts.append(("pair", (c, c + 1)))
        if (n - start) % 2:
            parts.append(("single", (n - 1,)))
        return parts

    # -- streaming ------------------------------------------------------------------------------

    def push(self, block: np.ndarray) -> None:
        """Analyse the next block: float32 ``(channels, frames)``, full scale 1.0."""
        x = np.asarray(block)
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise InvalidParameter(f"block of shape {x.shape}: expected ({self.channels}, frames)")
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        n = x.shape[1]
        if n == 0:
            return
        first = self._frames
        bursts = self._scan(x, first) if self._modes else []
        windows: list[_Windows] = []
        pos = 0
        w = self.window_frames
        if self._acc_n:
            take = min(w - self._acc_n, n)
            self._accumulate(x[:, :take])
            pos = take
            if self._acc_n == w:
                windows.append(self._flush_acc(first + pos))
        k = (n - pos) // w
        if k:
            s, p, d = self._stats(x[:, pos:pos + k * w].reshape(self.channels, k, w))
            windows.append((first + pos + w * np.arange(k), np.full(k, w), s, p, d))
            pos += k * w
        if pos < n:
            self._accumulate(x[:, pos:])
        self._frames += n
        if windows:
            starts, counts, sums, products, diffs = (np.concatenate(parts) for parts in zip(*windows, strict=True))
            self._classify(starts, counts, sums, products, diffs, bursts)
        if bursts:
            self._track(bursts)
        self._close_stale(self._frames - self._gap)

    def _stats(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per window sums, cross products and first-difference energy of ``xs`` (C, k, W)."""
        c, k, _ = xs.shape
        s = xs.sum(axis=2).T.astype(np.float64)  # (k, C); float32 pairwise summation
        if c <= 2:
            p = np.empty((k, c, c))
            for i in range(c):
                for j in range(i, c):
                    p[:, i, j] = p[:, j, i] = np.einsum("kw,kw->k", xs[i], xs[j])
        else:  # one batched product (BLAS) beats C(C+1)/2 einsums
            xt = xs.transpose(1, 0, 2)
            p = np.matmul(xt, xt.transpose(0, 2, 1)).astype(np.float64)
        d = np.zeros((k, c))
        for ch in self._lfe_probe:
            diff = np.diff(xs[ch], axis=1)
            d[:, ch] = np.einsum("kw,kw->k", diff, diff)
        return s, p, d

    def _accumulate(self, seg: np.ndarray) -> None:
        """Add a part of a window (it straddles blocks) to the running sums."""
        self._acc_s += seg.sum(axis=1)
        self._acc_p += seg @ seg.T
        for ch in self._lfe_probe:
            diff = np.diff(seg[ch])
            self._acc_d[ch] += float(diff @ diff)
        self._acc_n += seg.shape[1]

    def _flush_acc(self, end: int) -> _Windows:
        n = self._acc_n
        out = (np.array([end - n]), np.array([n]), self._acc_s[None].copy(), self._acc_p[None].copy(),
               self._acc_d[None].copy())
        self._acc_n = 0
        self._acc_s[:] = 0.0
        self._acc_p[:] = 0.0
        self._acc_d[:] = 0.0
        return out

    # -- classification -------------------------------------------------------------------------

    def _classify(self, starts: np.ndarray, counts: np.ndarray, s: np.ndarray, p: np.ndarray,
                  d: np.ndarray, bursts: list[tuple[int, int, int, int, int]]) -> None:
        """Label consecutive windows (first frames ``starts``, lengths ``counts``); feed the segmenter."""
        k = len(counts)
        counts = counts.astype(np.float64)
        mean = s / counts[:, None]
        cov = p / counts[:, None, None] - mean[:, :, None] * mean[:, None, :]
        var = np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0)
        active = var >= self._var_floor
        ends = starts + counts.astype(np.int64)
        data = self._data_mask(starts, ends, bursts)
        if data is not None:
            active &= ~data
        if self.channels <= 2:
            labels = self._label_fast(active, cov, var)
        else:
            ratio = d / np.maximum(var * counts[:, None], 1e-30)
            labels = self._label_parts(active, cov, var, ratio)
        # Runs of equal labels go to the segmenter in one call each.
        change = np.flatnonzero(np.diff(labels)) + 1
        bounds = np.concatenate([[0], change, [k]])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            self._segmenter.add(int(labels[a]), int(starts[a]), int(ends[b - 1]))

    def _label_fast(self, active: np.ndarray, cov: np.ndarray, var: np.ndarray) -> np.ndarray:
        """Vectorised labels for one or two channels."""
        n_active = active.sum(axis=1)
        labels = np.where(n_active == 0, _SILENCE, _MONO)
        if self.channels == 2:
            with np.errstate(divide="ignore", invalid="ignore"):
                r = cov[:, 0, 1] / np.sqrt(var[:, 0] * var[:, 1])
            labels = np.where((n_active == 2) & ~(np.abs(r) >= self._mono_r), _STEREO, labels)
        return labels

    def _label_parts(self, active: np.ndarray, cov: np.ndarray, var: np.ndarray, ratio: np.ndarray) -> np.ndarray:
        """Labels for three or more channels: part states vectorised over windows, then combined."""
        sd = np.sqrt(var)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = cov / (sd[:, :, None] * sd[:, None, :])
        # same[w, i, j]: channels i and j carry one signal, or one of them is inactive.
        same = (np.abs(r) >= self._mono_r) | ~active[:, :, None] | ~active[:, None, :]
        labels = np.where(active.any(axis=1), -1, _SILENCE)
        labels[(labels == -1) & same.all(axis=(1, 2))] = _MONO
        todo = np.flatnonzero(labels == -1)
        if todo.size == 0:
            return labels
        states = {hint: self._part_states(parts, active, same) for hint, parts in self._layouts.items()}
        carries: dict[tuple[int | None, int, int], np.ndarray] = {}
        for i in todo:
            if self._lfe_probe:
                self._update_lfe_hint(active[i], ratio[i])
            hint = self._lfe_hint
            act = [(j, int(st[i])) for j, st in enumerate(states[hint]) if st[i] >= 0]
            if len(act) == 1:
                labels[i] = act[0][1]
                continue
            (ja, a), (jb, b) = act[0], act[1]
            if (a == _SURROUND or a == _STEREO) and b == _MONO and len(act) == 2:
                key = (hint, ja, jb)
                if key not in carries:
                    carries[key] = self._carries(cov, active, self._layouts[hint][ja][1], self._layouts[hint][jb][1])
                if a == _SURROUND:
                    labels[i] = _SURROUND_MONO if carries[key][i] else _SURROUND_SAP
                else:
                    labels[i] = _STEREO_MONO if carries[key][i] else _STEREO_SAP
            elif a == _SURROUND:
                labels[i] = _SURROUND_STEREO
            elif b == _SURROUND:
                labels[i] = _STEREO_SURROUND
            else:
                labels[i] = _PAIRS
        return labels

    @staticmethod
    def _part_states(parts: list[tuple[str, tuple[int, ...]]], active: np.ndarray,
                     same: np.ndarray) -> list[np.ndarray]:
        """Per part, per window: -1 (silent), mono, stereo or 5.1 (docs/channel-format.md)."""
        out = []
        for kind, chans in parts:
            ix = list(chans)
            act = active[:, ix]
            one = same[:, ix][:, :, ix].all(axis=(1, 2))
            wide = act[:, 2:].any(axis=1) if kind == "5.1" else np.ones(len(act), dtype=bool)
            state = np.where(one, _MONO, np.where(wide & (kind == "5.1"), _SURROUND, _STEREO))
            out.append(np.where(act.any(axis=1), state, -1))
        return out

    def _carries(self, cov: np.ndarray, active: np.ndarray, main: tuple[int, ...],
                 other: tuple[int, ...]) -> np.ndarray:
        """Per window: the summed active channels of ``other`` correlate with those of ``main``."""
        wa = np.zeros(active.shape)
        wb = np.zeros(active.shape)
        wa[:, list(main)] = active[:, list(main)]
        wb[:, list(other)] = active[:, list(other)]
        cross = np.einsum("ki,kij,kj->k", wa, cov, wb)
        va = np.einsum("ki,kij,kj->k", wa, cov, wa)
        vb = np.einsum("ki,kij,kj->k", wb, cov, wb)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(cross) / np.sqrt(va * vb) >= self._downmix_r

    def _update_lfe_hint(self, active: np.ndarray, ratio: np.ndarray) -> None:
        lfe = {c: bool(active[c] and ratio[c] < self._lfe_ratio) for c in self._lfe_probe}
        if lfe[3]:
            self._lfe_hint = 3
        elif lfe[5]:
            self._lfe_hint = 5
        elif self._lfe_hint is not None and active[self._lfe_hint]:
            self._lfe_hint = None  # the chosen LFE channel now carries full-band audio

    # -- ST 337 ---------------------------------------------------------------------------------

    def _scan(self, x: np.ndarray, first: int) -> list[tuple[int, int, int, int, int]]:
        """Bursts whose Pa lies in the unexamined tail or this block (absolute frames, sorted)."""
        n = x.shape[1]
        found: list[tuple[int, int, int, int, int]] = []
        tail_n = self._tail.shape[1]
        if n >= 3:
            if tail_n:
                seam = np.concatenate([self._tail, x[:, :3]], axis=1)
                found += _shifted(_find_bursts(seam, tail_n, self._modes), self._tail_start)
            found += _shifted(_find_bursts(x, n - 3, self._modes), first)
            self._tail = x[:, n - 3:].copy()
            self._tail_start = first + n - 3
        else:
            seam = np.concatenate([self._tail, x], axis=1)
            limit = max(0, seam.shape[1] - 3)
            found += _shifted(_find_bursts(seam, limit, self._modes), self._tail_start)
            self._tail = seam[:, limit:].copy()
            self._tail_start += limit
        found.sort()
        return found

    def _data_mask(self, starts: np.ndarray, ends: np.ndarray,
                   bursts: list[tuple[int, int, int, int, int]]) -> np.ndarray | None:
        """(k, C): channels carrying ST 337 data in each window (a burst within the gap before it)."""
        if self._unwrapped or (not bursts and self._last_burst.max() < starts[0] - self._gap):
            return None
        mask = np.zeros((len(starts), self.channels), dtype=bool)
        per_channel: dict[int, list[int]] = {}
        for frame, c0, nch, _, _ in bursts:
            for c in range(c0, c0 + nch):
                per_channel.setdefault(c, []).append(frame)
        for c in range(self.channels):
            frames = np.array([self._last_burst[c], *per_channel.get(c, [])], dtype=np.int64)
            hits = np.searchsorted(frames, ends) - np.searchsorted(frames, starts - self._gap)
            mask[:, c] = hits > 0
        return mask

    def _track(self, bursts: list[tuple[int, int, int, int, int]]) -> None:
        for frame, c0, nch, bits, dtype in bursts:
            chans = tuple(range(c0, c0 + nch))
            self._last_burst[list(chans)] = frame
            key = (chans, bits)
            run = self._open_runs.get(key)
            if run is not None and frame - run.last <= self._gap:
                run.period = frame - run.last
                run.last = frame
                run.count += 1
            else:
                if run is not None:
                    self._keep(run)
                run = self._open_runs[key] = _BurstRun(chans, bits, frame, frame)
            run.types[dtype] = run.types.get(dtype, 0) + 1

    def _keep(self, run: _BurstRun) -> None:
        if run.count >= 2:  # one preamble alone can be a chance match in PCM audio
            self._runs.append(run)

    def _close_stale(self, before: int) -> None:
        for key in [k for k, r in self._open_runs.items() if r.last < before]:
            self._keep(self._open_runs.pop(key))

    # -- result ---------------------------------------------------------------------------------

    def _allowed_channel(self, c: int) -> bool:
        if c in self.compressed_channels:
            return True
        mask = self.alarms.allow_compressed_audio if self.alarms is not None else 0
        return c < 8 and bool(mask >> c & 1)

    def _compressed(self) -> list[CompressedAudio]:
        sr, t0 = self.sample_rate, self.start_s
        out: list[CompressedAudio] = []
        if self._unwrapped and self._frames:
            chans = tuple(range(self.channels))
            out.append(CompressedAudio(
                channels=chans, format=self.codec, data_type=None, word_bits=None, start_s=t0,
                end_s=t0 + self._frames / sr, bursts=0,
                allowed=all(self._allowed_channel(c) for c in chans),
                note=_UNWRAPPED_NOTE.format(codec=self.codec),
            ))
        for run in self._runs:
            informative = {t: n for t, n in run.types.items() if t not in _FILLER_TYPES} or run.types
            dtype = max(informative, key=lambda t: (informative[t], -t))
            end = min(run.last + run.period, self._frames)
            out.append(CompressedAudio(
                channels=run.channels, format=ST337_DATA_TYPES.get(dtype, f"data_type_{dtype}"),
                data_type=dtype, word_bits=run.word_bits, start_s=t0 + run.first / sr,
                end_s=t0 + end / sr, bursts=run.count,
                allowed=all(self._allowed_channel(c) for c in run.channels),
            ))
        out.sort(key=lambda c: (c.start_s, c.channels))
        return out

    def _alarms(self, segments: list[FormatSegment], compressed: list[CompressedAudio]) -> list[AlarmEvent]:
        cfg = self.alarms
        if cfg is None or not cfg.enabled or not segments:
            return []
        t0, t1 = segments[0].start_s, segments[-1].end_s
        dur, sens = float(cfg.secs_in_alarm_duration), float(cfg.sensitivity)
        trailing = f"in violation for >= {sens:.0%} of the trailing {dur:g} s"
        events: list[AlarmEvent] = []
        bad_formats = [s for s in segments if not cfg.allows_format(s.label)]
        for a, b in alarm_intervals([(s.start_s, s.end_s) for s in bad_formats], t0, t1,
                                    duration_s=dur, sensitivity=sens):
            labels = sorted({s.label for s in bad_formats if s.start_s < b and s.end_s > a - dur})
            events.append(AlarmEvent("audioFormat", a, b,
                                     f"audio format {', '.join(map(repr, labels))} not allowed by "
                                     f"allowableAudioFormat={cfg.allowable_audio_format}: {trailing}"))
        bad_data = [c for c in compressed if not c.allowed]
        for a, b in alarm_intervals([(c.start_s, c.end_s) for c in bad_data], t0, t1,
                                    duration_s=dur, sensitivity=sens):
            what = sorted({f"{c.format} on channel(s) {','.join(map(str, c.channels))}"
                           for c in bad_data if c.start_s < b and c.end_s > a - dur})
            events.append(AlarmEvent("compressedAudio", a, b,
                                     f"compressed audio {'; '.join(what)} not allowed by allowCompressedAudio="
                                     f"{cfg.allow_compressed_audio} and compressed_channels="
                                     f"{list(self.compressed_channels)}: {trailing}"))
        events.sort(key=lambda e: (e.start_s, e.kind))
        return events

    def result(self) -> ChannelFormatResult:
        """Segments, compressed audio and alarms for everything pushed so far."""
        if self._acc_n:  # the last, partial window
            self._classify(*self._flush_acc(self._frames), [])
        self._close_stale(self._frames + 1)
        sr, t0 = self.sample_rate, self.start_s
        segments = [FormatSegment(LABELS[label], t0 + a / sr, t0 + b / sr)
                    for label, a, b in self._segmenter.finish()]
        compressed = self._compressed()
        return ChannelFormatResult(
            segments=tuple(segments),
            compressed=tuple(compressed),
            alarms=tuple(self._alarms(segments, compressed)),
            start_s=t0,
            duration_s=self._frames / sr,
            window_s=self.window_s,
        )


def analyze(y: np.ndarray, sr: int, *, channel_names: Sequence[str] | None = None,
            block_frames: int = 1 << 16, **options: Any) -> ChannelFormatResult:
    """One-shot :class:`ChannelFormatAnalyzer` over an array ``y`` (channels, frames) or (frames,).

    ``channel_names`` defaults to FFmpeg's default layout for the channel count; ``options`` are
    the analyzer's keyword arguments.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 1:
        y = y[np.newaxis, :]
    names = tuple(channel_names) if channel_names is not None else default_layout(y.shape[0])[1]
    analyzer = ChannelFormatAnalyzer(sr, names, **options)
    for i in range(0, y.shape[1], block_frames):
        analyzer.push(y[:, i:i + block_frames])
    return analyzer.result()
