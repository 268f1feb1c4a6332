"""The loopback load-test script against a real ``rtdetr serve`` process: 50 concurrent clients, zero failed
requests, bounded memory, and requests actually batched together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_benchmark


@pytest.mark.slow
def test_load_script_zero_failures(tiny_checkpoint: Path, tmp_path: Path) -> None:
    load_test = load_benchmark("load_test")
    out = tmp_path / "load.json"
    rc = load_test.main(
        [f"--model={tiny_checkpoint}", "--concurrency", "50", "--requests=150", "--repeat=2", "--threads=1",
         "--serve-arg=--max-batch=8", f"--json={out}"]
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert rc == 0, report
    assert report["failed_total"] == 0
    for r in report["rounds"]:
        assert r["ok"] == 150 and r["status_counts"] == {"200": 150}
        assert r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["rss_mb_peak"] is not None
    assert report["memory_stable"]
    assert report["mean_batch"] > 1.5  # concurrent requests were batched


def test_load_script_refuses_remote_urls() -> None:
    load_test = load_benchmark("load_test")
    with pytest.raises(SystemExit):
        load_test.main(["--url=http://example.com:8000"])
