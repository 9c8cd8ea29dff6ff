"""audiolib: the signal-processing core of audioqc (arrays in, frozen dataclasses out)."""

__version__ = "0.1.0"
#: Bumped whenever a change alters any measured value, so cached results are recomputed.
ANALYSIS_VERSION = "3"  # 2: perceptual blocks and dialogue-gated loudness; 3: int8 DNSMOS by default
