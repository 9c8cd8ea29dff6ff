"""Test material: generated (seeded) signals, corpora and report histories with known answers, and
FFmpeg's meters as oracles. Nothing is downloaded and no audio is committed; recordings come from
Debian packages that scripts/setup.sh installs.

media           programme-like signals, coloured noise at a given SNR, encoded variants, FFmpeg's ebur128
denoise         noisy speech material and the denoiser benchmark's metrics
dnsmos          9.01 s clips at 16 kHz for building and checking the int8 DNSMOS model
content_corpus  the labelled speech/music corpus (real recordings and synthesisers)
reports         synthetic QC report histories for trends and comparisons
"""
