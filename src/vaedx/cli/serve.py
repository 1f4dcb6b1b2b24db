"""`vaedx serve`: run the API and web page with uvicorn.

Binds 127.0.0.1 by default. Binding to any other address needs an API token (``--token`` or the
``VAEDX_SERVE_TOKEN`` environment variable; see :mod:`vaedx.serve.auth`), unless the user says
``--insecure``, which is then announced on stderr: a model must not reach a network by accident.

``--workers N`` runs N requests at once as N threads sharing the one model in memory (torch releases the
GIL in its kernels; :mod:`vaedx.serve.admission` says why threads and not processes), each with
``--threads / N`` torch threads, so N workers together use the cores one used before. ``--queue`` more
requests may wait for a worker; past that the service answers 503 with Retry-After at once instead of
holding uploads without a bound.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import typer

from vaedx.cli.options import DEVICE_HELP, THREADS_HELP, check_device, required, set_threads, with_config
from vaedx.cli.options import print_config as show_config
from vaedx.errors import ConfigError

MIB = 1024 * 1024


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def worker_threads(threads: int | None, workers: int) -> int | None:
    """Torch threads per worker: ``--threads`` (or torch's default, when more than one worker) over N."""
    if threads is not None and threads < 1:
        raise ConfigError("--threads must be at least 1")
    if threads is None and workers == 1:
        return None  # torch's own default, as before
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    return max(1, threads // workers)


def _log_to_stderr() -> None:
    """Show the service's own lines (format, size, score, time - never file names) beside uvicorn's."""
    log = logging.getLogger("vaedx.serve")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def serve_command(
    ctx: typer.Context,
    model: Path | None = typer.Option(None, "--model", "-m", help="Run folder or checkpoint folder."),
    diagnosis: Path | None = typer.Option(
        None, "--diagnosis", "-d", help="Diagnosis classifier folder (optional)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; loopback unless you mean it."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", help="Largest accepted upload (MB)."),
    max_volume_upload_mb: float = typer.Option(
        512.0, "--max-volume-upload-mb", help="Largest accepted volume upload, NIfTI or DICOM zip (MiB)."
    ),
    volume_cache_mb: float = typer.Option(
        4096.0, "--volume-cache-mb", help="Disk kept for the results of uploaded volumes (MiB)."
    ),
    volume_cache_count: int = typer.Option(8, "--volume-cache-count", min=1, help="Volumes kept at once."),
    volume_expiry_min: float = typer.Option(
        60.0, "--volume-expiry-min", help="Minutes a volume's results stay after their last use."
    ),
    scorer: str | None = typer.Option(
        None,
        "--scorer",
        help="Scorer (any of `vaedx detect`). Its thresholds, options and postprocess come from the run's "
        "thresholds.json, as `vaedx detect` uses them. Default: residual unless only others are calibrated.",
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="VAEDX_SERVE_TOKEN",
        help="API token every request must carry (Authorization: Bearer ...); needed to bind a "
        "non-loopback --host. Prefer the VAEDX_SERVE_TOKEN environment variable: a command line is visible "
        "to other users.",
        show_envvar=False,
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="Serve a non-loopback --host with no token: anyone reaching it can use it."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Requests in inference at once (threads sharing the one model)."
    ),
    queue: int | None = typer.Option(
        None, "--queue", min=0, help="Requests that may wait for a worker (default 2 x --workers); more: 503."
    ),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML of these options (typed ones win)."
    ),
    print_config: bool = typer.Option(False, "--print-config", help="Print the settings as YAML and exit."),
) -> None:
    """Serve anomaly scores, heatmaps and diagnosis over HTTP, with a web page at / (research use only)."""
    s = with_config(ctx, config, dict(locals()), hidden=("ctx",))
    if print_config:
        show_config(s, skip=("ctx", "token"))  # a secret is never printed
    model, host, port = required(s["model"], "--model"), s["host"], s["port"]
    try:
        import uvicorn

        from vaedx.serve.app import create_app
    except ImportError as e:
        raise ConfigError(
            f"serving needs the 'serve' extra: pip install 'vaedx[serve]' ({e.name} missing)"
        ) from e
    token = s["token"] or None
    if token is not None:
        from vaedx.serve.auth import check_token

        try:
            check_token(token)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    elif not _is_loopback(host) and not s["insecure"]:
        raise ConfigError(
            f"--host {host} is reachable from the network: give an API token (--token or VAEDX_SERVE_TOKEN), "
            "or --insecure to serve without one"
        )
    for key in ("max_upload_mb", "max_volume_upload_mb", "volume_cache_mb", "volume_expiry_min"):
        if s[key] <= 0:
            raise ConfigError(f"--{key.replace('_', '-')} must be positive")
    workers = s["workers"]
    per_worker = worker_threads(s["threads"], workers)
    set_threads(per_worker)
    app = create_app(
        model, s["diagnosis"], max_upload_bytes=int(s["max_upload_mb"] * MIB), scorer=s["scorer"],
        device=check_device(s["device"]), max_volume_upload_bytes=int(s["max_volume_upload_mb"] * MIB),
        volume_cache_entries=s["volume_cache_count"], volume_cache_bytes=int(s["volume_cache_mb"] * MIB),
        volume_cache_ttl_s=s["volume_expiry_min"] * 60, token=token, workers=workers, queue=s["queue"],
    )  # fmt: skip
    if not _is_loopback(host) and token is None:
        typer.secho(f"warning: serving on {host} without authentication (--insecure); anyone who reaches it "
                    "can use it", err=True, fg="yellow")  # fmt: skip
    elif token is not None:
        typer.echo("requests need the API token (Authorization: Bearer ...; the page asks for it)", err=True)
    _log_to_stderr()
    cal = app.state.predictor.calibration
    flags = (f"threshold {cal.image_threshold:.6g}, postprocess {cal.post.as_dict()}" if cal.problem is None
             else cal.problem)  # fmt: skip
    typer.echo(f"vaedx serving {model} on http://{host}:{port}/  (research use only)", err=True)
    typer.echo(f"scorer {cal.scorer}: {flags}", err=True)
    gate = app.state.gate
    typer.echo(f"{gate.workers} worker(s) x {per_worker or 'default'} torch thread(s), {gate.queue} more "
               "may wait (then 503)", err=True)  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
