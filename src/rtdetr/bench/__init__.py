"""Measurement helpers: parameters, FLOPs and latency."""

from rtdetr.bench.profile import LatencyStats, count_gflops, count_parameters, measure_latency

__all__ = ["LatencyStats", "count_gflops", "count_parameters", "measure_latency"]
