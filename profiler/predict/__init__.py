"""Latency prediction: a model as its runtime's kernels (:mod:`.kernels`),
one regressor per kernel type (:mod:`.regressor`), fitted on a device's
micro-benchmarks and stored as a portable calibration file
(:mod:`.calibration`)."""
