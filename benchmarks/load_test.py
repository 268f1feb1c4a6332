"""Loopback load test of ``rtdetr serve``: throughput, latency percentiles, failures and server memory under
50-200 concurrent requests.

Starts ``rtdetr serve MODEL`` on a free loopback port (or targets ``--url``, which must be loopback), then for
each ``--concurrency`` level runs ``--requests`` POSTs of one JPEG from that many concurrent clients, ``--repeat``
times. While a round runs, the server's resident memory (VmRSS of its process) is sampled every 50 ms.

Reported per round: requests ok/failed (any non-200 or transport error is a failure), status counts,
throughput (requests/s), p50/p90/p99/max latency (ms), server RSS before/peak/after (MB). "Stable memory" means
the RSS after the last round is within ``--rss-tolerance-mb`` of the RSS after the first round at the highest
level (warm-up growth is excluded). Exit status 1 on any failed request or unstable memory.

    python benchmarks/load_test.py --model rtdetr_r18vd --concurrency 50 100 200 --requests 400 \\
        --json benchmarks/results_load_test.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
from PIL import Image, ImageDraw

from rtdetr.engine.hardware import cpu_info

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def test_image(width: int = 640, height: int = 480, seed: int = 0) -> bytes:
    """A JPEG with a gradient background and a few shapes (deterministic)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    arr = np.stack([90 + 80 * xx / width, 110 + 60 * yy / height, 150 - 50 * xx / width], -1)
    img = Image.fromarray((arr + rng.normal(0, 6, arr.shape)).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for k in range(6):
        x0, y0 = int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 3 // 4))
        box = [
            x0,
            y0,
            x0 + int(rng.integers(width // 10, width // 4)),
            y0 + int(rng.integers(height // 10, height // 4)),
        ]
        (draw.ellipse if k % 2 else draw.rectangle)(box, fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: str, threads: int | None, extra: list[str], timeout: float = 600.0) -> tuple[Any, str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "rtdetr.cli", "serve", model, "--host", "127.0.0.1", "--port", str(port), *extra]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not answer /health within {timeout} s")


async def run_round(url: str, body: bytes, concurrency: int, requests: int, pid: int | None) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter = Counter()
    errors: Counter = Counter()
    issued = 0
    rss: list[float] = []
    before = rss_mb(pid) if pid else None

    async def sample() -> None:
        while pid:
            v = rss_mb(pid)
            if v is not None:
                rss.append(v)
            await asyncio.sleep(0.05)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal issued
        while issued < requests:
            issued += 1
            t0 = time.perf_counter()
            try:
                r = await client.post(url + "/predict", content=body, headers={"content-type": "image/jpeg"})
                statuses[r.status_code] += 1
                if r.status_code == 200 and "detections" not in r.json():
                    errors["200 without detections"] += 1
            except httpx.HTTPError as e:
                errors[type(e).__name__] += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sampler = asyncio.create_task(sample())
    t0 = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(600.0)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    await asyncio.sleep(1.0)  # let the server go idle (it trims freed memory then)
    sampler.cancel()
    after = rss_mb(pid) if pid else None
    ok = statuses.get(200, 0) - errors.get("200 without detections", 0)
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    return {
        "concurrency": concurrency,
        "requests": requests,
        "ok": ok,
        "failed": requests - ok,
        "status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
        "wall_s": round(wall, 2),
        "throughput_rps": round(ok / wall, 2),
        "p50_ms": round(q[49], 1),
        "p90_ms": round(q[89], 1),
        "p99_ms": round(q[98], 1),
        "max_ms": round(max(latencies), 1) if latencies else None,
        "rss_mb_before": round(before, 1) if before else None,
        "rss_mb_peak": round(max(rss), 1) if rss else None,
        "rss_mb_after": round(after, 1) if after else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="rtdetr_r18vd", help="what to serve (checkpoint, variant, .onnx)")
    ap.add_argument("--url", help="an already running server (loopback only) instead of starting one")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[50, 100, 200])
    ap.add_argument("--requests", type=int, default=400, help="requests per round")
    ap.add_argument("--repeat", type=int, default=2, help="rounds per concurrency level")
    ap.add_argument("--image", help="JPEG/PNG to send (default: a generated 640x480 JPEG)")
    ap.add_argument("--threads", type=int, default=2, help="server inference threads")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra 'rtdetr serve' argument (repeatable)")
    ap.add_argument("--rss-tolerance-mb", type=float, default=64.0)
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)
    if args.requests < 1 or args.repeat < 1 or min(args.concurrency) < 1:
        ap.error("--requests, --repeat and --concurrency must be >= 1")

    body = Path(args.image).read_bytes() if args.image else test_image()
    proc = None
    if args.url:
        if urlparse(args.url).hostname not in LOOPBACK:
            ap.error(f"--url must be a loopback address ({', '.join(LOOPBACK)}); this test never leaves the machine")
        url, pid = args.url.rstrip("/"), None
    else:
        proc, url = start_server(args.model, args.threads, args.serve_arg)
        pid = proc.pid
    try:
        info = httpx.get(url + "/info", timeout=10).json()
        warm = asyncio.run(run_round(url, body, 4, 8, pid))  # warm-up, not reported
        if warm["failed"]:
            raise RuntimeError(f"warm-up failed: {warm}")
        rounds = []
        for c in args.concurrency:
            for r in range(args.repeat):
                res = asyncio.run(run_round(url, body, c, args.requests, pid))
                res["round"] = r + 1
                rounds.append(res)
                print(
                    f"c={c:4d} round {r + 1}: ok {res['ok']}/{res['requests']}  {res['throughput_rps']:.2f} req/s  "
                    f"p50 {res['p50_ms']:.0f} ms  p99 {res['p99_ms']:.0f} ms  "
                    f"RSS {res['rss_mb_before']} -> peak {res['rss_mb_peak']} -> {res['rss_mb_after']} MB",
                    flush=True,
                )
        stats = httpx.get(url + "/info", timeout=10).json()["stats"]
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    top = [r for r in rounds if r["concurrency"] == max(args.concurrency)]
    growth = None
    if pid and top[0]["rss_mb_after"] and rounds[-1]["rss_mb_after"]:
        growth = round(rounds[-1]["rss_mb_after"] - top[0]["rss_mb_after"], 1)
    failed = sum(r["failed"] for r in rounds)
    report = {
        "model": info.get("model"),
        "backend": info.get("backend"),
        "image_bytes": len(body),
        "server_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "cpu": cpu_info().as_dict(),
        "rounds": rounds,
        "failed_total": failed,
        "rss_growth_mb": growth,
        "memory_stable": growth is None or abs(growth) <= args.rss_tolerance_mb,
        "mean_batch": round(stats["images"] / max(stats["batches"], 1), 2),
    }
    print(f"failed requests: {failed}; RSS growth after warm rounds: {growth} MB; mean batch {report['mean_batch']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if failed == 0 and report["memory_stable"] else 1


if __name__ == "__main__":
    sys.exit(main())
