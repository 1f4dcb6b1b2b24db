"""The FastAPI app: ``create_app(model_dir)`` loads the model once and serves the API and the web page.

Why these choices:

* the body size is limited twice - by Content-Length before anything is read, and by counting bytes as they
  arrive (a chunked upload has no Content-Length) - so a huge upload is refused with 413 early; each
  upload route has its own limit (a brain volume is hundreds of MB, a 2-D image a few), and every other
  path takes at most 1 MiB;
* at most ``workers`` requests are in inference at once and ``queue`` more wait; beyond that a request
  is answered 503 with Retry-After before its body is read (:mod:`vaedx.serve.admission` says why worker
  threads and not processes);
* uploaded volumes are scored once; their overlays and NIfTI files are then fetched by id from a bounded
  cache (:mod:`vaedx.serve.volume_cache`) that is emptied at shutdown;
* ``/docs`` and ``/redoc`` are off: FastAPI's pages load Swagger/ReDoc from a CDN, and everything served
  here must work offline; ``/openapi.json`` stays;
* a Content-Security-Policy of 'self' makes the browser refuse any network request the page might make
  elsewhere, so "works offline" is enforced, not just intended.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from vaedx.serve import schemas as sc
from vaedx.serve import volume_cache as vc
from vaedx.serve import volumes as vs
from vaedx.serve.admission import Admission, Gate
from vaedx.serve.auth import TokenAuth
from vaedx.serve.inference import Predictor, ServeError, UploadOptions
from vaedx.serve.schemas import BatchItem, BatchResponse, ErrorBody, Health, ModelInfo, Prediction

log = logging.getLogger("vaedx.serve")
STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
MAX_BATCH_FILES = 32
_MULTIPART_SLACK = 64 * 1024  # boundaries and form fields around the file itself
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


class BodyLimit:
    """ASGI middleware: 413 when Content-Length or the bytes actually received exceed the path's limit.

    ``limits`` are file limits; each path takes ``slack`` more for the multipart framing around the file,
    and messages name the file limit the user configured.
    """

    def __init__(self, app: ASGIApp, limits: dict[str, int], default: int = 1 << 20, slack: int = 0):
        self.app, self.limits, self.default, self.slack = app, limits, default, slack

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        shown = self.limits.get(path, self.default)
        limit = shown + self.slack if path in self.limits else shown
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            body = json.dumps({"detail": too_large(shown)})
            headers_out = [(b"content-type", b"application/json"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 413, "headers": headers_out})
            await send({"type": "http.response.body", "body": body.encode()})
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # HTTPException passes through FastAPI's body parsing as is
                    raise HTTPException(413, too_large(shown))
            return message

        await self.app(scope, counted, send)


def too_large(limit: int) -> str:
    return f"request body larger than the limit of {limit} bytes ({limit / (1 << 20):.1f} MiB)"


async def _security_headers(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
    response = await call_next(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


_BUSY = {"model": ErrorBody, "description": "Busy: all workers and the queue are taken; see Retry-After."}
_ERRORS: dict[int | str, dict[str, Any]] = {
    503: _BUSY,
    413: {"model": ErrorBody, "description": "Upload too large."},
    415: {"model": ErrorBody, "description": "Not a PNG, JPEG, TIFF, DICOM or NIfTI image (by content)."},
    422: {"model": ErrorBody, "description": "Unreadable image, or one the model cannot take."},
}
_VOLUME_ERRORS: dict[int | str, dict[str, Any]] = {
    503: _BUSY,
    413: {"model": ErrorBody, "description": "Upload too large, or it unpacks to too much (zip, NIfTI)."},
    415: {"model": ErrorBody, "description": "Not a NIfTI or a zip (by content)."},
    422: {"model": ErrorBody, "description": "Unreadable volume, or one the model cannot take."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown volume id, expired results, or slice out of range."},
}


def create_app(
    model_dir: str | Path,
    diagnosis_dir: str | Path | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    scorer: str | None = None,
    device: str = "cpu",
    max_volume_upload_bytes: int = vs.DEFAULT_MAX_VOLUME_UPLOAD,
    max_volume_unpacked_bytes: int = vs.DEFAULT_MAX_UNCOMPRESSED,
    volume_cache_entries: int = vc.DEFAULT_MAX_ENTRIES,
    volume_cache_bytes: int = vc.DEFAULT_MAX_BYTES,
    volume_cache_ttl_s: float = vc.DEFAULT_TTL_S,
    token: str | None = None,
    workers: int = 1,
    queue: int | None = None,
) -> FastAPI:
    """Build the app; the model (and diagnosis, if any) is loaded here, once, so errors show at start-up.

    ``scorer`` None picks residual, or the scorer thresholds.json was calibrated for (see resolve_scoring).
    ``max_volume_*`` limit what ``POST /v1/volumes`` takes; ``volume_cache_*`` bound how many scored
    volumes (and how many bytes of their results) are kept, and for how long after their last use.
    ``token``: every route but the page and ``/healthz`` then needs it (see :mod:`vaedx.serve.auth`).
    ``workers``: requests in inference at once (threads sharing the one model); ``queue``: admitted
    requests that may wait for a worker (default ``2 * workers``); more get 503 with Retry-After.
    """
    gate = Gate(workers, queue)
    predictor = Predictor(model_dir, diagnosis_dir, scorer=scorer, device=device)
    cache_root = Path(tempfile.mkdtemp(prefix="vaedx-serve-volumes-"))  # 0700, removed at shutdown
    cache = vc.VolumeCache(cache_root, volume_cache_entries, volume_cache_bytes, volume_cache_ttl_s)
    limits_in = vs.VolumeLimits(max_volume_upload_bytes, max_volume_unpacked_bytes)
    volumes = vs.VolumeService(predictor, cache, limits_in)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        import anyio.to_thread

        # sync endpoints run in anyio's pool: room for every admitted request plus the light GET routes
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, gate.capacity + 16)
        yield
        cache.close()
        predictor.close()

    app = FastAPI(
        title="vaedx",
        version=_version(),
        description="VAE anomaly scores, heatmaps and diagnosis for medical images. Research use only.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.predictor = predictor
    app.state.max_upload_bytes = max_upload_bytes
    app.state.volumes = volumes
    app.state.gate = gate
    limits = {
        "/v1/predict": max_upload_bytes,
        "/v1/predict/batch": max_upload_bytes * MAX_BATCH_FILES,
        "/v1/volumes": max_volume_upload_bytes,
    }
    app.add_middleware(Admission, gate=gate, paths=tuple(limits))  # inside BodyLimit: 413 comes first
    app.add_middleware(BodyLimit, limits=limits, slack=_MULTIPART_SLACK)
    if token is not None:
        app.add_middleware(TokenAuth, token=token)  # added last, so it runs first: no body is read unasked
    app.middleware("http")(_security_headers)

    @app.exception_handler(ServeError)
    async def _serve_error(_: Request, e: ServeError) -> JSONResponse:
        return JSONResponse({"detail": e.message}, status_code=e.status)

    def run_one(upload: UploadFile, opts: UploadOptions) -> dict[str, Any]:
        return predictor.predict_upload(upload.file, opts, max_upload_bytes)

    @app.post("/v1/predict", response_model=Prediction, responses=_ERRORS)
    def predict(
        file: UploadFile = File(..., description="One image: PNG, JPEG, TIFF, DICOM or NIfTI."),
        slice_index: int | None = Form(
            None, description="NIfTI slice / DICOM frame (default: middle/first)."
        ),
        window: str | None = Form(None, description="DICOM window: a name (lung, brain...), auto, or c,w."),
    ) -> dict[str, Any]:
        with gate.slot():
            return run_one(file, UploadOptions(slice_index, window))

    @app.post("/v1/predict/batch", response_model=BatchResponse, responses=_ERRORS)
    def predict_batch(
        files: list[UploadFile] = File(..., description=f"Up to {MAX_BATCH_FILES} images."),
        slice_index: int | None = Form(None),
        window: str | None = Form(None),
    ) -> dict[str, Any]:
        if len(files) > MAX_BATCH_FILES:
            raise ServeError(413, f"too many files: at most {MAX_BATCH_FILES} per batch")
        items, opts = [], UploadOptions(slice_index, window)
        with gate.slot():  # one request, one worker: a batch does not take several at once
            for i, upload in enumerate(files):
                try:
                    items.append(BatchItem(index=i, ok=True, status=200, result=run_one(upload, opts)))
                except ServeError as e:
                    items.append(BatchItem(index=i, ok=False, status=e.status, error=e.message))
        n_ok = sum(it.ok for it in items)
        return {"items": items, "n_ok": n_ok, "n_failed": len(items) - n_ok}

    @app.post("/v1/volumes", response_model=sc.VolumeResult, responses=_VOLUME_ERRORS)
    def upload_volume(
        file: UploadFile = File(..., description=f"One volume: {vs.SUPPORTED}."),
    ) -> dict[str, Any]:
        with gate.slot():
            return volumes.upload(file.file)

    @app.get("/v1/volumes/{volume_id}", response_model=sc.VolumeResult, responses=_NOT_FOUND)
    def volume_result(volume_id: str) -> dict[str, Any]:
        return volumes.entry(volume_id).result

    @app.delete("/v1/volumes/{volume_id}", status_code=204, responses=_NOT_FOUND)
    def delete_volume(volume_id: str) -> Response:
        if not cache.remove(volume_id):
            raise ServeError(404, "no such volume: unknown id, or its results expired")
        return Response(status_code=204)

    png_doc = {200: {"content": {"image/png": {}}, "description": "Slice with heatmap and lesion outline."},
               **_NOT_FOUND}  # fmt: skip

    @app.get("/v1/volumes/{volume_id}/slices/{index}.png", response_class=Response, responses=png_doc)
    def volume_slice(volume_id: str, index: int) -> Response:
        return Response(volumes.overlay_png(volume_id, index), media_type="image/png")

    def nifti_download(volume_id: str, which: str) -> StreamingResponse:
        f, name = volumes.nifti(volume_id, which)

        def chunks():  # type: ignore[no-untyped-def]
            with f:
                while chunk := f.read(1 << 20):
                    yield chunk

        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return StreamingResponse(chunks(), media_type="application/gzip", headers=headers)

    nifti_doc = {200: {"content": {"application/gzip": {}}, "description": "NIfTI in the input's space."},
                 **_NOT_FOUND}  # fmt: skip

    @app.get("/v1/volumes/{volume_id}/map.nii.gz", response_class=StreamingResponse, responses=nifti_doc)
    def volume_map(volume_id: str) -> StreamingResponse:
        return nifti_download(volume_id, "map")

    @app.get("/v1/volumes/{volume_id}/mask.nii.gz", response_class=StreamingResponse, responses=nifti_doc)
    def volume_mask(volume_id: str) -> StreamingResponse:
        return nifti_download(volume_id, "mask")

    @app.get("/v1/model", response_model=ModelInfo)
    def model_info() -> dict[str, Any]:
        return predictor.model_info()

    @app.get("/healthz", response_model=Health)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "model_kind": predictor.loaded.kind}

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _version() -> str:
    from vaedx.version import __version__

    return __version__
