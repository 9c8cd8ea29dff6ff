"""audiolib: the signal-processing core of audioqc (arrays in, frozen dataclasses out)."""

__version__ = "0.1.0"
#: Bumped whenever a change alters any measured value, so cached results are recomputed.
ANALYSIS_VERSION = "5"  # 2: perceptual blocks and dialogue-gated loudness; 3: int8 DNSMOS by default;
# 4: true peak on an 8x fractional-delay grid (not BS.1770-4 Annex 2's example filter), music detector
# with held and off-voice-comb features (issue 19); 5: DNSMOS on at most 64 windows a file, a systematic
# sample (quality_windows), the int8 model without its inactive conv2d_1 channels (issue 19)
