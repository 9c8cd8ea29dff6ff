"""Accuracy evaluations: audioqc's readings against the standards, FFmpeg's meters and labelled
material. Each prints the tables docs/accuracy.md and the other docs quote; timings live in
benchmarks/, test material in testing/material/."""
