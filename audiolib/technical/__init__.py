"""Technical checks broadcast QC reports: DC offset, phase, effective bandwidth, dropouts.

Four streaming analyzers, one module each, fed the same float32 ``(channels, frames)`` blocks as
every other analyzer (one decode pass); each is ``Analyzer(sample_rate, channel_names, *,
start_s=0.0, **options)`` with ``push(block)`` / ``result()``, flat memory, frozen results whose
``to_dict()`` is the ``diagnose`` block. What each measures and why its thresholds are what they
are: docs/technical.md.
"""

from __future__ import annotations

from .bandwidth import *  # noqa: F401,F403
from .bandwidth import __all__ as _bandwidth_all
from .dc_offset import *  # noqa: F401,F403
from .dc_offset import __all__ as _dc_all
from .dropouts import *  # noqa: F401,F403
from .dropouts import __all__ as _dropouts_all
from .phase import *  # noqa: F401,F403
from .phase import __all__ as _phase_all

__all__ = sorted(set(_dc_all) | set(_phase_all) | set(_bandwidth_all) | set(_dropouts_all))
