"""trace.json: the Chrome Trace Event format that Perfetto UI and chrome://tracing open."""

import json

import pytest

from lwprof.reports.trace import COUNTER, trace

# Two backends, one fused row on onnxruntime (conv covers bn and act), one layer torch timed that ORT did not.
LAYERS = [
    {"batch_size": "1", "layer": "conv", "op_class": "conv", "flops": "2000", "macs": "1000", "memory_bytes": "400",
     "memory_bytes_fused": "300", "torch_time_s": "0.001", "onnxruntime_time_s": "0.0005",
     "onnxruntime_fused_layers": "bn act", "onnxruntime_roofline_efficiency": "0.25", "onnxruntime_bound_by": "memory"},
    {"batch_size": "1", "layer": "bn", "op_class": "normalization", "flops": "100", "macs": "0", "memory_bytes": "200",
     "memory_bytes_fused": "0", "torch_time_s": "0.0002", "onnxruntime_time_s": ""},
    {"batch_size": "1", "layer": "act", "op_class": "activation", "flops": "50", "macs": "0", "memory_bytes": "200",
     "memory_bytes_fused": "0", "torch_time_s": "0.0001", "onnxruntime_time_s": ""},
]
RESULTS = [{"backend": "torch", "precision": "fp32", "batch_size": 1, "median_s": 0.0016},
           {"backend": "onnxruntime", "precision": "fp32", "batch_size": 1, "median_s": 0.0006},
           {"backend": "openvino", "precision": "fp32", "batch_size": 1, "skipped": "not installed"}]


def slices(events, pid):
    return [e for e in events if e["ph"] == "X" and e["pid"] == pid]


def test_every_event_has_the_schema_fields_and_slices_never_overlap():
    events = json.loads(json.dumps(trace(LAYERS, RESULTS, "net", "cpu")))["traceEvents"]
    for event in events:
        assert {"ph", "ts", "pid", "tid", "name"} <= set(event), event
        assert event["ph"] in {"M", "X", "C"}
        if event["ph"] == "X":
            assert event["dur"] > 0
    for pid in {e["pid"] for e in events}:
        timed = slices(events, pid)
        assert all(a["ts"] + a["dur"] <= b["ts"] + 1e-9 for a, b in zip(timed, timed[1:]))


def test_one_process_per_backend_with_layers_end_to_end():
    events = trace(LAYERS, RESULTS, "net", "cpu")["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    # openvino was skipped: no process of its own.
    assert names == {1: "torch batch 1: end to end 1.600 ms (median)", 2: "onnxruntime batch 1: end to end 0.600 ms (median)"}
    torch_slices = slices(events, 1)
    assert [(s["name"], s["ts"], s["dur"]) for s in torch_slices] == [
        ("conv", 0.0, pytest.approx(1000.0)), ("bn", pytest.approx(1000.0), pytest.approx(200.0)),
        ("act", pytest.approx(1200.0), pytest.approx(100.0))]
    (fused,) = slices(events, 2)
    assert fused["args"]["fused_layers"] == "bn act" and fused["args"]["roofline_efficiency"] == 0.25
    assert fused["args"]["flops"] == 2000 and fused["args"]["memory_bytes_fused"] == 300
    # The counter ends at the layers' sum over the end-to-end median: 1.3 ms / 1.6 ms = 0.8125.
    counter = [e for e in events if e["ph"] == "C" and e["pid"] == 1]
    assert counter[-1]["name"] == COUNTER and counter[-1]["args"]["share"] == pytest.approx(1.3 / 1.6)
