"""Load test for `vaedx serve`: N concurrent clients POST images to /v1/predict for a bounded time.

Why threads + httpx on loopback: it measures the service (decode, preprocess, model, PNG rendering), not the
network, and needs nothing beyond the dev extra. Starts its own uvicorn server in this process (so RSS is
the server's plus the clients'), unless --url points at a running one. Each client cycles through the
given images (real test-split images are the honest payload; the default is one random 28x28 PNG).

    python benchmarks/serve_load.py --model runs/pneumonia [--diagnosis runs/diag] [--scorer residual] \
        --clients 4 --seconds 20 --image test_pngs/ --threads 1

Prints requests/s, p50/p99 latency, error count, flagged share, the RSS after the run and the 1-minute load
average before/after (the machine may be shared), as text and as one JSON line.
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


def _images(paths: list[Path] | None) -> list[bytes]:
    """Bytes of the given files, or of the files inside given folders (sorted); a random PNG by default."""
    if not paths:
        return [_png()]
    files = [f for p in paths for f in (sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p])]
    if not files:
        sys.exit("no image files found")
    return [f.read_bytes() for f in files]


def _load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0]) if Path("/proc/loadavg").exists() else -1.0


def _start_server(
    model: Path, diagnosis: Path | None, scorer: str | None
) -> tuple[str, object, threading.Thread]:
    import uvicorn

    from vaedx.serve.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(model, diagnosis, scorer=scorer), host="127.0.0.1", port=port,
                       log_level="warning")  # fmt: skip
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            sys.exit("server did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def run(url: str, images: list[bytes], clients: int, seconds: float) -> dict[str, float | int]:
    latencies: list[float] = []
    errors, flagged = [0], [0]
    lock = threading.Lock()
    load_before = _load1()
    stop_at = time.monotonic() + seconds

    def worker(k: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            i = k
            while time.monotonic() < stop_at:
                image = images[i % len(images)]
                i += 1
                t0 = time.perf_counter()
                try:
                    r = c.post("/v1/predict", files={"file": ("x", image, "application/octet-stream")})
                    ok, flag = r.status_code == 200, r.status_code == 200 and r.json()["flag"] is True
                except httpx.HTTPError:
                    ok = flag = False
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        latencies.append(dt)
                        flagged[0] += flag
                    else:
                        errors[0] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
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
        "flagged": flagged[0],
        "rss_mb_after": round(_rss_mb(), 1),
        "load1_before": load_before,
        "load1_after": _load1(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="Run folder; a server is started in-process.")
    ap.add_argument("--url", help="Use a running server instead (RSS is then this client's only).")
    ap.add_argument("--diagnosis", type=Path, help="Diagnosis folder to attach (with --model).")
    ap.add_argument("--scorer", help="Scorer for the in-process server (default: as `vaedx serve`).")
    ap.add_argument("--image", type=Path, nargs="+", help="Image files or folders (default: a random PNG).")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the in-process server.")
    args = ap.parse_args()
    if (args.model is None) == (args.url is None):
        ap.error("give exactly one of --model and --url")
    images = _images(args.image)
    server = None
    url = args.url
    if args.model is not None:
        import torch

        torch.set_num_threads(args.threads)
        url, server, _ = _start_server(args.model, args.diagnosis, args.scorer)
    try:
        with httpx.Client(base_url=url, timeout=60) as c:  # warm-up, and fail fast on a bad setup
            for image in images:
                r = c.post("/v1/predict", files={"file": ("x", image, "application/octet-stream")})
                if r.status_code != 200:
                    sys.exit(f"warm-up request failed: {r.status_code} {r.text[:200]}")
            info = c.get("/v1/model").json()
        result = run(url, images, args.clients, args.seconds)
    finally:
        if server is not None:
            server.should_exit = True  # type: ignore[attr-defined]
    r = result
    cal = info["calibration"]
    result.update(images=len(images), image_shape=info["image_shape"], scorer=info["scorer"],
                  threshold=cal["image_threshold"], postprocess=cal["postprocess"],
                  diagnosis=info["diagnosis"]["attached"])  # fmt: skip
    print(f"model {info['kind']} {info['image_shape']}, scorer {info['scorer']} (threshold "
          f"{cal['image_threshold']}, postprocess {cal['postprocess']}), "
          f"diagnosis {info['diagnosis']['attached']}")
    print(f"{r['clients']} clients, {r['seconds']} s, {len(images)} distinct images: {r['requests']} ok, "
          f"{r['errors']} errors, {r['flagged']} flagged")
    print(f"{r['rps']} requests/s")
    print(f"latency p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; RSS after {r['rss_mb_after']} MB")
    print(f"load average (1 min) before {r['load1_before']}, after {r['load1_after']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
