"""Load test for `vaedx serve`: N concurrent clients POST one image to /v1/predict for a bounded time.

Why threads + httpx on loopback: it measures the service (decode, preprocess, model, PNG rendering), not the
network, and needs nothing beyond the dev extra. Starts its own uvicorn server in this process (so RSS is
the server's plus the clients'), unless --url points at a running one.

    python benchmarks/serve_load.py --model runs/pneumonia --clients 4 --seconds 20 [--image x.png]

Prints requests/s, p50/p99 latency, error count and the RSS after the run, as text and as one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np


def _png(size: int = 28) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((size, size)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _rss_mb() -> float:
    """Current RSS from /proc (Linux), else the peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _start_server(model: Path) -> tuple[str, object, threading.Thread]:
    import uvicorn

    from vaedx.serve.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(model), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            sys.exit("server did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def run(url: str, image: bytes, clients: int, seconds: float) -> dict[str, float | int]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    ok = c.post("/v1/predict", files={"file": ("x", image, "image/png")}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        latencies.append(dt)
                    else:
                        errors[0] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "requests": len(latencies),
        "errors": errors[0],
        "rps": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "rss_mb_after": round(_rss_mb(), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="Run folder; a server is started in-process.")
    ap.add_argument("--url", help="Use a running server instead (RSS is then this client's only).")
    ap.add_argument("--image", type=Path, help="Image to upload (default: a random 28x28 PNG).")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    if (args.model is None) == (args.url is None):
        ap.error("give exactly one of --model and --url")
    image = args.image.read_bytes() if args.image else _png()
    server = None
    url = args.url
    if args.model is not None:
        url, server, _ = _start_server(args.model)
    try:
        with httpx.Client(base_url=url, timeout=60) as c:  # warm-up, and fail fast on a bad setup
            r = c.post("/v1/predict", files={"file": ("x", image, "image/png")})
            if r.status_code != 200:
                sys.exit(f"warm-up request failed: {r.status_code} {r.text[:200]}")
        result = run(url, image, args.clients, args.seconds)
    finally:
        if server is not None:
            server.should_exit = True  # type: ignore[attr-defined]
    r = result
    print(f"{r['clients']} clients, {r['seconds']} s: {r['requests']} ok, {r['errors']} errors")
    print(f"{r['rps']} requests/s")
    print(f"latency p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; RSS after {r['rss_mb_after']} MB")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
