"""The loopback load-test script against a real ``rtdetr serve`` process: 50 concurrent clients, zero failed
requests, bounded memory, and requests actually batched together."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "load_test.py"


def _load_script():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("load_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_load_script_zero_failures(tiny_checkpoint: Path, tmp_path: Path) -> None:
    load_test = _load_script()
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
    load_test = _load_script()
    with pytest.raises(SystemExit):
        load_test.main(["--url=http://example.com:8000"])
