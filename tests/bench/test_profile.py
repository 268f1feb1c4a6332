import pytest

from rtdetr.bench.profile import count_gflops, count_parameters, measure_latency
from rtdetr.models import create_model, get_variant


def test_r18_gflops_match_published_table() -> None:
    model = create_model("rtdetr_r18vd")
    assert count_parameters(model) / 1e6 == pytest.approx(20.18, abs=0.01)
    assert count_gflops(model) == pytest.approx(get_variant("rtdetr_r18vd").gflops, rel=0.03)


def test_gflops_scale_with_input_area() -> None:
    model = create_model("rtdetr_r18vd")
    assert count_gflops(model, (320, 320)) < count_gflops(model, (640, 640)) / 3


def test_measure_latency_counts_runs() -> None:
    calls = []
    stats = measure_latency(lambda: calls.append(1), warmup=2, runs=5)
    assert len(calls) == 7 and stats.runs == 5 and stats.min_ms <= stats.median_ms <= stats.max_ms
    with pytest.raises(ValueError):
        measure_latency(lambda: None, runs=0)
