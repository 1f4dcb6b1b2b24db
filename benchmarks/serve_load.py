"""Load test for `vaedx serve`: concurrent clients POST images to /v1/predict for a bounded time.

Why threads + httpx on loopback: it measures the service (decode, preprocess, model, PNG rendering), not the
network, and needs nothing beyond the dev extra. Starts its own uvicorn server in this process (so RSS is
the server's plus the clients'), unless --url points at a running one. Each client cycles through the
given images (real test-split images are the honest payload: --image DIR, or --pneumonia N exports the
first N PneumoniaMNIST test images as PNGs to a temporary folder; the default is one random 28x28 PNG).

    python benchmarks/serve_load.py --model runs/pneumonia [--diagnosis runs/diag] [--scorer residual] \
        --clients 4 --seconds 20 --image test_pngs/ --threads 1
    python benchmarks/serve_load.py --model runs/pneumonia --sweep 1,2,4 --seconds 15 --pneumonia 200
    python benchmarks/serve_load.py --model runs/pneumonia --mixed 0.2 --seconds 15 --pneumonia 200

--sweep 1,2,4 starts one server per N with ``--workers N`` and ``--threads`` split over the workers as
``vaedx serve`` splits them, driven by ``--clients`` clients (default 2 x N: N in inference, N waiting in
the queue of 2 x N, so no 503 is expected), and prints one table row and one JSON line per N.

--mixed FRACTION sends that share of bad uploads instead of images (garbage bytes, a truncated PNG, an
empty file, a request with no file, a body over the upload limit, in turn): every one must get a 4xx, and
``server_errors`` (answers >= 500 other than 503, and dropped connections) must be 0; 503 (busy, with
Retry-After) is allowed and counted apart. Answers are counted per status code for good and bad uploads.

Prints requests/s (200s of good uploads), p50/p99 latency of those, errors (any answer other than the
expected one, 503 aside), flagged share, the RSS after the run and the 1-minute load average before/after
(the machine may be shared), as text and as JSON lines. Exits 1 when there was any server error.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

MIB = 1024 * 1024
BAD_KINDS = ("garbage", "truncated_png", "empty_file", "no_file", "oversized")


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


def export_pneumonia(n: int, out: Path, npz: Path | None = None) -> list[Path]:
    """The first ``n`` PneumoniaMNIST test-split images as PNG files in ``out`` (the data set's own bytes)."""
    from PIL import Image

    from vaedx.data.locate import find_data_file

    npz = npz or find_data_file("pneumoniamnist/pneumoniamnist.npz")
    if npz is None:
        sys.exit("PneumoniaMNIST not found: set VAEDX_DATA_DIR (or give --image)")
    images = np.load(npz)["test_images"][:n]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(out / f"test_{i:04d}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def bad_uploads(image: bytes, max_upload_bytes: int) -> dict[str, bytes | None]:
    """One body per kind of bad upload (None: the request carries no file at all).

    The oversized one passes the route's limit plus the multipart slack, so it is refused by its
    Content-Length before the service reads it.
    """
    from vaedx.serve.app import _MULTIPART_SLACK

    return {
        "garbage": random.Random(0).randbytes(4096),
        "truncated_png": image[: max(8, len(image) // 2)],
        "empty_file": b"",
        "no_file": None,
        "oversized": b"\x89PNG\r\n\x1a\n" + bytes(max_upload_bytes + _MULTIPART_SLACK),
    }


class Server:
    """uvicorn with the app of ``vaedx serve`` in a thread of this process, on a free loopback port."""

    def __init__(self, model: Path, diagnosis: Path | None = None, scorer: str | None = None,
                 workers: int = 1, queue: int | None = None, max_upload_bytes: int = 20 * MIB):  # fmt: skip
        import uvicorn

        from vaedx.serve.app import create_app

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        app = create_app(model, diagnosis, scorer=scorer, workers=workers, queue=queue,
                         max_upload_bytes=max_upload_bytes)  # fmt: skip
        self.gate = app.state.gate
        self.url = f"http://127.0.0.1:{port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                sys.exit("server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


def _post(c: httpx.Client, body: bytes | None) -> httpx.Response:
    if body is None:
        return c.post("/v1/predict")
    return c.post("/v1/predict", files={"file": ("x", body, "application/octet-stream")})


def warm_up(url: str, images: list[bytes]) -> dict:
    """Post every image once (a bad setup fails here, not as a flood of errors); the model's /v1/model."""
    with httpx.Client(base_url=url, timeout=60) as c:
        for image in images:
            r = _post(c, image)
            if r.status_code != 200:
                sys.exit(f"warm-up request failed: {r.status_code} {r.text[:200]}")
        return c.get("/v1/model").json()


def run(url: str, images: list[bytes], clients: int, seconds: float, mixed: float = 0.0,
        bad: dict[str, bytes | None] | None = None, seed: int = 0) -> dict:  # fmt: skip
    """``clients`` threads post for ``seconds``; a ``mixed`` share of the posts are ``bad`` uploads.

    Good uploads should get 200, bad ones a 4xx; 503 is allowed for both and counted apart. Anything else
    is an error; a 5xx other than 503 or a dropped connection is also a server error.
    """
    if mixed and not bad:
        raise ValueError("mixed load needs bad uploads")
    kinds = sorted(bad or {})
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    counts = Counter({"errors": 0, "server_errors": 0, "busy_503": 0, "bad_not_4xx": 0, "flagged": 0})
    lock = threading.Lock()
    load_before = _load1()
    stop_at = time.monotonic() + seconds

    def worker(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        i = n_bad = k
        with httpx.Client(base_url=url, timeout=60) as c:
            while time.monotonic() < stop_at:
                kind = None
                if mixed and rng.random() < mixed:
                    kind, n_bad = kinds[n_bad % len(kinds)], n_bad + 1
                    body = bad[kind]  # type: ignore[index]
                else:
                    body, i = images[i % len(images)], i + 1
                t0 = time.perf_counter()
                try:
                    r = _post(c, body)
                    code = r.status_code
                    flag = code == 200 and kind is None and r.json()["flag"] is True
                except httpx.HTTPError as e:
                    code, flag = type(e).__name__, False
                dt = time.perf_counter() - t0
                with lock:
                    statuses[f"{kind or 'good'} {code}"] += 1
                    if code == 503:
                        counts["busy_503"] += 1
                    elif kind is None and code == 200:
                        latencies.append(dt)
                        counts["flagged"] += flag
                    elif kind is not None and isinstance(code, int) and 400 <= code < 500:
                        pass
                    else:
                        counts["errors"] += 1
                        counts["bad_not_4xx"] += kind is not None
                        counts["server_errors"] += not isinstance(code, int) or code >= 500

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    n_bad = sum(v for key, v in statuses.items() if not key.startswith("good "))
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "requests": len(latencies),
        "rps": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        **counts,
        "mixed": mixed,
        "bad_uploads": n_bad,
        "statuses": dict(sorted(statuses.items())),
        "rss_mb_after": round(_rss_mb(), 1),
        "load1_before": load_before,
        "load1_after": _load1(),
    }


def sweep(model: Path, images: list[bytes], workers: list[int], seconds: float, threads: int | None = 1,
          clients: int | None = None, mixed: float = 0.0, diagnosis: Path | None = None,
          scorer: str | None = None, max_upload_bytes: int = 20 * MIB) -> list[dict]:  # fmt: skip
    """One in-process server per N of ``workers``, each set up like ``vaedx serve --workers N --threads T``
    (its ``--queue`` the default 2 x N)."""
    import torch

    from vaedx.cli.options import set_threads
    from vaedx.cli.serve import worker_threads

    bad = bad_uploads(images[0], max_upload_bytes) if mixed else None
    rows, before = [], torch.get_num_threads()
    for n in workers:
        per_worker = worker_threads(threads, n)
        set_threads(per_worker)  # as the CLI: every worker thread takes torch's process-wide setting
        server = Server(model, diagnosis, scorer, workers=n, max_upload_bytes=max_upload_bytes)
        try:
            info = warm_up(server.url, images)
            row = run(server.url, images, clients or 2 * n, seconds, mixed, bad)
        finally:
            server.stop()
            torch.set_num_threads(before)
        rows.append({"workers": n, "threads_per_worker": per_worker, "queue": server.gate.queue, **row,
                     "scorer": info["scorer"], "images": len(images)})  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    """The sweep as a Markdown table (the docs quote it as printed)."""
    head = ("| workers | torch threads each | clients | requests/s | p50 ms | p99 ms | ok | errors | 503 "
            "| server errors | load avg before / after |")  # fmt: skip
    lines = [head, "|" + " --- |" * head.count(" | ") + " --- |"]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['threads_per_worker'] or 'default'} | {r['clients']} | {r['rps']} "
            f"| {r['p50_ms']} | {r['p99_ms']} | {r['requests']} | {r['errors']} | {r['busy_503']} "
            f"| {r['server_errors']} | {r['load1_before']} / {r['load1_after']} |"
        )
    return "\n".join(lines)


def _print_single(r: dict, info: dict, n_images: int) -> None:
    cal = info["calibration"]
    print(f"model {info['kind']} {info['image_shape']}, scorer {info['scorer']} (threshold "
          f"{cal['image_threshold']}, postprocess {cal['postprocess']}), "
          f"diagnosis {info['diagnosis']['attached']}")  # fmt: skip
    print(f"{r['clients']} clients, {r['seconds']} s, {n_images} distinct images: {r['requests']} ok, "
          f"{r['errors']} errors, {r['flagged']} flagged")  # fmt: skip
    print(f"{r['rps']} requests/s")
    print(f"latency p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; RSS after {r['rss_mb_after']} MB")
    print(f"load average (1 min) before {r['load1_before']}, after {r['load1_after']}")


def _print_statuses(r: dict) -> None:
    print(f"mixed {r['mixed']}: {r['bad_uploads']} bad uploads; answers by status:")
    for key, count in r["statuses"].items():
        print(f"  {count} x {key}")
    print(f"503 (busy): {r['busy_503']}; bad uploads without a 4xx: {r['bad_not_4xx']}; "
          f"server_errors: {r['server_errors']}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="Run folder; a server is started in-process.")
    ap.add_argument("--url", help="Use a running server instead (RSS is then this client's only).")
    ap.add_argument("--diagnosis", type=Path, help="Diagnosis folder to attach (with --model).")
    ap.add_argument("--scorer", help="Scorer for the in-process server (default: as `vaedx serve`).")
    ap.add_argument("--image", type=Path, nargs="+", help="Image files or folders (default: a random PNG).")
    ap.add_argument("--pneumonia", type=int, metavar="N", help="Use the first N PneumoniaMNIST test images.")
    ap.add_argument("--clients", type=int, help="Concurrent clients (default 4; 2 x N with --sweep).")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the in-process server.")
    ap.add_argument("--sweep", help="Comma-separated --workers values, one in-process server each.")
    ap.add_argument("--mixed", type=float, default=0.0, metavar="FRACTION", help="Share of bad uploads.")
    ap.add_argument("--max-upload-mb", type=float, default=20.0,
                    help="Upload limit of the server (the oversized upload passes it).")  # fmt: skip
    args = ap.parse_args()
    if (args.model is None) == (args.url is None):
        ap.error("give exactly one of --model and --url")
    if args.sweep and args.url:
        ap.error("--sweep starts its own servers: give --model, not --url")
    if not 0.0 <= args.mixed < 1.0:
        ap.error("--mixed is a share of the requests, from 0 to below 1")
    limit = int(args.max_upload_mb * MIB)
    with tempfile.TemporaryDirectory(prefix="vaedx-serve-load-") as tmp:
        paths = args.image
        if args.pneumonia:
            paths = [*(paths or []), *export_pneumonia(args.pneumonia, Path(tmp))]
        images = _images(paths)
    if args.sweep:
        workers = [int(w) for w in args.sweep.split(",")]
        rows = sweep(args.model, images, workers, args.seconds, args.threads, args.clients, args.mixed,
                     args.diagnosis, args.scorer, limit)  # fmt: skip
        print(f"{len(images)} distinct images, {args.seconds} s per row, scorer {rows[0]['scorer']}")
        print(table(rows))
        for r in rows:
            if args.mixed:
                print(f"workers {r['workers']}: ", end="")
                _print_statuses(r)
        for r in rows:
            print(json.dumps(r))
        sys.exit(1 if any(r["server_errors"] for r in rows) else 0)
    server = None
    url = args.url
    if args.model is not None:
        import torch

        torch.set_num_threads(args.threads)
        server = Server(args.model, args.diagnosis, args.scorer, max_upload_bytes=limit)
        url = server.url
    try:
        info = warm_up(url, images)
        bad = bad_uploads(images[0], limit) if args.mixed else None
        result = run(url, images, args.clients or 4, args.seconds, args.mixed, bad)
    finally:
        if server is not None:
            server.stop()
    cal = info["calibration"]
    result.update(images=len(images), image_shape=info["image_shape"], scorer=info["scorer"],
                  threshold=cal["image_threshold"], postprocess=cal["postprocess"],
                  diagnosis=info["diagnosis"]["attached"])  # fmt: skip
    _print_single(result, info, len(images))
    if args.mixed:
        _print_statuses(result)
    print(json.dumps(result))
    sys.exit(1 if result["server_errors"] else 0)


if __name__ == "__main__":
    main()
