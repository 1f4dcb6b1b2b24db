"""Hostile input: mutated real files through every reader; only one-line input errors may come out.

Seeds are real files: an LGG PNG slice, a JPEG and a PNG of the Cheng set (from ``VAEDX_DATA_DIR``),
pydicom's CT_small / MR_small / a JPEG 2000 DICOM, nibabel's NIfTI files (plain and gzipped), the
PneumoniaMNIST npz and a vaedx manifest CSV. Each case flips bits (mostly in the header), truncates, splices
random bytes, or writes a huge 32-bit value into the header (absurd Rows/Columns, NIfTI dims), then reads
the result with the reader a user's command would use (``read_any``, ``read_npz``, ``read_manifest``). A case
fails when anything but a :class:`vaedx.errors.VaedxError` comes out, or the message spans several lines, or
a read takes longer than ``--time-limit`` seconds. Prints cases tried, distinct failures (with one example
each) and the slowest case; ``--json`` prints the summary as one JSON line (the test suite runs a short,
seeded round that way).

``--serve --model RUN`` posts the mutated files to the service instead (FastAPI's TestClient, the real app
and model): each case goes to ``/v1/predict`` (with random ``slice_index`` / ``window`` fields), to
``/v1/predict/batch`` with a second mutated file, or to ``/v1/volumes``, whose seeds add 3-D NIfTIs and a
zip of DICOM files. Empty uploads are among the cases. A case fails on any answer but a 200 or a 4xx
whose body is ``{"detail": "<one line>"}`` (batch items likewise), on an exception out of the app (a 500),
or on a request slower than ``--time-limit``.

    .venv/bin/python benchmarks/fuzz.py --cases 20000 --seed 1
    .venv/bin/python benchmarks/fuzz.py --serve --model runs/pn_vae --cases 2000 --seed 1
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import tempfile
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

DATA = Path(os.environ.get("VAEDX_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def seeds() -> list[Path]:
    import nibabel as nib
    import pydicom

    pyd = Path(pydicom.__file__).parent / "data" / "test_files"
    nibd = Path(nib.__file__).parent / "tests" / "data"
    found = [pyd / "CT_small.dcm", pyd / "MR_small.dcm", pyd / "MR_small_jp2klossless.dcm"]
    found += [nibd / "anatomical.nii", nibd / "example4d.nii.gz"]
    lgg = DATA / "brain_lgg"
    if lgg.is_dir():
        found.append(next(lgg.rglob("*_10.png")))
        found.append(lgg / "manifest.csv")
    cheng = DATA / "brain_cheng_figshare"
    if cheng.is_dir():
        found += sorted(cheng.rglob("*.jpg"))[:1] + sorted(cheng.rglob("*.png"))[:1]
    npz = DATA / "pneumoniamnist" / "pneumoniamnist.npz"
    if npz.is_file():
        found.append(npz)
    return [p for p in found if p.is_file()]


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    op = rng.choice(["flip", "flip", "truncate", "splice", "huge"])
    if op == "flip":
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(min(len(b), 2048)) if rng.random() < 0.8 else rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif op == "truncate":
        b = b[: rng.randrange(1, len(b))]
    elif op == "splice":
        i = rng.randrange(len(b))
        b[i : i + rng.randint(1, 64)] = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    else:
        i = rng.randrange(min(len(b), 1024))
        b[i : i + 4] = rng.choice([b"\xff\xff\xff\x7f", b"\x00\x00\x01\x00", b"\xff\xff"])
    return bytes(b), op


def read(path: Path, kind: str) -> None:
    from vaedx.data.manifest import read_manifest
    from vaedx.io import read_any, read_npz

    if kind == ".csv":
        read_manifest(path, check_files=False)
    elif kind == ".npz":
        read_npz(path)
    else:
        read_any(path)


Problem = tuple[str, str] | None
# One case: the names it is filed under (seed file, or route and file), the mutation, and the attempt,
# which gives the problem with the answer or None; an exception out of it is a problem too.
Case = tuple[tuple[str, ...], str, Callable[[], Problem]]


def tally(n_cases: int, seed: int, time_limit: float, make_case: Callable[[int], Case], crash: str) -> dict:
    """Run ``make_case(0..n_cases-1)`` and sort the outcomes: distinct failures with one example each, and
    the slowest case. The readers and the service are judged by this one loop, so a failure means the
    same in both: a problem the attempt names, an exception out of it (``crash`` prefixes its type), or
    an attempt slower than ``time_limit`` seconds."""
    failures: Counter[tuple[str, ...]] = Counter()
    examples: dict[str, str] = {}
    slowest = (0.0, "")
    for case in range(n_cases):
        names, op, attempt = make_case(case)
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                problem = attempt()
        except Exception as e:  # what must never come out
            problem = (f"{crash}{type(e).__name__}", " ".join(str(e).split())[:120])
        took = time.perf_counter() - t0
        if took > time_limit:
            problem = problem or ("too slow", f"{took:.1f} s")
        if took > slowest[0]:
            slowest = (took, f"{' '.join(names)} ({op})")
        if problem:
            key = (*names, *problem)
            failures[key] += 1
            examples.setdefault(" | ".join(key), f"seed {seed}, case {case}, {op}")
    return {
        "distinct_failures": len(failures),
        "failures": {" | ".join(k): v for k, v in failures.most_common()},
        "examples": examples,
        "slowest_s": round(slowest[0], 4),
        "slowest_case": slowest[1],
    }


def run(n_cases: int, seed: int, time_limit: float) -> dict:
    from vaedx.errors import VaedxError

    rng = random.Random(seed)
    files = seeds()
    originals = {p: p.read_bytes() for p in files}

    def attempt(target: Path, kind: str) -> Problem:
        try:
            read(target, kind)
        except VaedxError as e:
            return ("multi-line message", str(e)[:120]) if "\n" in str(e) else None
        return None

    with tempfile.TemporaryDirectory(prefix="vaedx-fuzz-") as tmp:

        def make_case(case: int) -> Case:
            src = rng.choice(files)
            kind = ".nii.gz" if src.name.endswith(".nii.gz") else src.suffix.lower()
            data, op = mutate(originals[src], rng)
            target = Path(tmp) / f"case{case % 8}{kind}"
            target.write_bytes(data)
            return (src.name,), op, lambda: attempt(target, kind)

        found = tally(n_cases, seed, time_limit, make_case, crash="")
    return {"cases": n_cases, "seeds": [p.name for p in files], **found}


# ------------------------------------------------------------------------------------------ the service
def volume_seeds() -> dict[str, bytes]:
    """3-D NIfTIs (plain, gzipped, a tiny one) and a zip of DICOM files, for ``/v1/volumes``."""
    import nibabel as nib
    import pydicom

    nibd = Path(nib.__file__).parent / "tests" / "data"
    pyd = Path(pydicom.__file__).parent / "data" / "test_files"
    anat = (nibd / "anatomical.nii").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("CT_small.dcm", "MR_small.dcm"):
            z.write(pyd / name, f"series/{name}")
    tiny = (nibd / "standard.nii.gz").read_bytes()
    return {"anatomical.nii": anat, "anatomical.nii.gz": gzip.compress(anat, mtime=0),
            "standard.nii.gz": tiny, "dicom.zip": buf.getvalue()}  # fmt: skip


def _check_answer(r: object) -> tuple[str, str] | None:
    """None for a 200 or a 4xx with a one-line JSON detail (and batch items likewise), else the problem."""
    status = r.status_code  # type: ignore[attr-defined]
    if status == 200:
        body = r.json()  # type: ignore[attr-defined]
        for item in body.get("items", []):
            if not (item["status"] == 200 or (400 <= item["status"] < 500 and _one_line(item["error"]))):
                return (f"batch item {item['status']}", str(item.get("error"))[:120])
        return None
    try:
        detail = r.json()["detail"]  # type: ignore[attr-defined]
    except (ValueError, KeyError, TypeError):
        return (f"{status} without a JSON detail", r.text[:120])  # type: ignore[attr-defined]
    if not 400 <= status < 500 or status == 503:
        return (f"status {status}", str(detail)[:120])
    if not _one_line(detail):
        return (f"{status} detail not one line", str(detail)[:120])
    return None


def _one_line(detail: object) -> bool:
    return isinstance(detail, str) and bool(detail.strip()) and "\n" not in detail


def run_serve(model: Path, n_cases: int, seed: int, time_limit: float) -> dict:
    from fastapi.testclient import TestClient

    from vaedx.serve.app import create_app

    rng = random.Random(seed)
    images = {p.name: p.read_bytes() for p in seeds() if p.suffix.lower() not in (".csv", ".npz")}
    volumes = {**volume_seeds(), **{k: v for k, v in images.items() if ".nii" in k}}
    statuses: Counter[str] = Counter()
    with TestClient(create_app(model), raise_server_exceptions=True) as client:

        def attempt(route: str, data: bytes, pool: dict[str, bytes]) -> Problem:
            r = _post(client, route, data, pool, rng)
            statuses[f"{route} {r.status_code}"] += 1  # type: ignore[attr-defined]
            return _check_answer(r)

        def make_case(case: int) -> Case:
            route = rng.choice(["/v1/predict", "/v1/predict", "/v1/predict/batch", "/v1/volumes"])
            pool = volumes if route == "/v1/volumes" else images
            name = rng.choice(sorted(pool))
            data, op = (b"", "empty") if rng.random() < 0.03 else mutate(pool[name], rng)
            return (route, name), op, lambda: attempt(route, data, pool)

        # an exception out of the app is what a client sees as a 500
        found = tally(n_cases, seed, time_limit, make_case, crash="500 ")
    return {
        "cases": n_cases,
        "seeds": sorted(set(images) | set(volumes)),
        "statuses": dict(sorted(statuses.items())),
        **found,
    }


def _post(client: object, route: str, data: bytes, pool: dict[str, bytes], rng: random.Random) -> object:
    """One request; the client's file name is a fixed dummy (the service must never rely on it)."""
    upload = ("upload.bin", data, "application/octet-stream")
    if route == "/v1/volumes":
        return client.post(route, files={"file": upload})  # type: ignore[attr-defined]
    form = {}
    if rng.random() < 0.3:
        form["slice_index"] = str(rng.choice([-1, 0, 2, 10**9, -(10**12)]))
    if rng.random() < 0.3:
        form["window"] = rng.choice(["lung", "auto", "40,400", "a,b", "1,0", " ", "nope"])
    if route.endswith("batch"):
        other, _ = mutate(pool[rng.choice(sorted(pool))], rng)
        files = [("files", upload), ("files", ("other.bin", other, "application/octet-stream"))]
        return client.post(route, files=files, data=form)  # type: ignore[attr-defined]
    return client.post(route, files={"file": upload}, data=form)  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=10.0, help="seconds one read may take")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--serve", action="store_true", help="post the mutated files to the service's uploads")
    ap.add_argument("--model", type=Path, help="run folder the service loads (with --serve)")
    a = ap.parse_args()
    if a.serve and a.model is None:
        ap.error("--serve needs --model RUN")
    t0 = time.perf_counter()
    out = run_serve(a.model, a.cases, a.seed, a.time_limit) if a.serve else run(a.cases, a.seed, a.time_limit)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if a.json:
        print(json.dumps(out))
        return
    print(f"cases tried: {out['cases']} over {len(out['seeds'])} real seed files in {out['seconds']} s")
    for key, count in out.get("statuses", {}).items():
        print(f"  {count} x {key}")
    print(f"distinct failures: {out['distinct_failures']}")
    for key, count in out["failures"].items():
        print(f"  {count} x {key}  (e.g. {out['examples'][key]})")
    print(f"slowest case: {out['slowest_s']} s ({out['slowest_case']})")


if __name__ == "__main__":
    main()
