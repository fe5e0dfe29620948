"""A calibration file with known coefficients, for the tests that show a
prediction beside a measurement: every kernel type costs exactly
1 us + FLOPs / 100 GFLOP/s + bytes / 10 GB/s, so a test computes what the
prediction must be."""

from lwprof.predict.calibration import Calibration
from lwprof.predict.kernels import FEATURES, FusionRules, kernel_types
from lwprof.predict.regressor import LINEAR_TERMS, Linear

OVERHEAD_S = 1e-5


def known_calibration(backend: str, precision: str = "fp32") -> Calibration:
    law = Linear(FEATURES, LINEAR_TERMS, (1e-11, 1e-10, 0.0), 1e-6, 10)
    return Calibration(device={"fingerprint": "test", "device": "cpu", "cpu": "test CPU", "threads": 1},
                       backend=backend, runtime_version="test", precision=precision, rules=FusionRules(),
                       regressors={kernel_type: law for kernel_type in kernel_types()}, overhead_s=OVERHEAD_S,
                       validation={"conv": {"samples": 10, "regressor": "linear", "median_relative_error": 0.05}},
                       created="2026-12-06T00:00:00+00:00", lwprof_version="test")
