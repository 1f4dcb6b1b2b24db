"""The `vaedx` command line: one typer app, one sub-command per stage of the pipeline.

Errors a user can cause are :class:`vaedx.errors.VaedxError`; ``main`` prints them as one red line and exits
with status 2, so no user ever sees a traceback. Set ``VAEDX_DEBUG=1`` to get the traceback anyway.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from vaedx.errors import VaedxError

TRAIN_HELP = "Train a VAE, AE or PCA baseline on a tensor store (torchrun-aware)."


class _LazyTrain(click.Command):
    """``vaedx train`` stands in here until it runs or shows its help.

    Why: its options are generated from TrainConfig/ModelConfig, whose modules import torch; building them
    only when ``train`` itself is used keeps ``vaedx --help`` and every other command quick to start.
    """

    def __init__(self) -> None:
        super().__init__("train", help=TRAIN_HELP, short_help=TRAIN_HELP, add_help_option=False)
        self._real: click.Command | None = None

    def real(self) -> click.Command:
        if self._real is None:
            from vaedx.cli.train import train_command

            single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
            single.command("train", help=TRAIN_HELP)(train_command)
            self._real = typer.main.get_command(single)
        return self._real

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        return self.real().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        return self.real().invoke(ctx)


class _Group(TyperGroup):
    """The root group, with ``train`` built on first use (see :class:`_LazyTrain`)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        names = list(self.commands)
        at = names.index("demo") + 1 if "demo" in names else len(names)
        items = list(self.commands.items())
        self.commands = dict([*items[:at], ("train", _LazyTrain()), *items[at:]])


app = typer.Typer(
    cls=_Group,
    name="vaedx",
    help="Variational autoencoders for medical image anomaly detection and diagnosis.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


def _register() -> None:
    """Sub-commands live beside the code they drive; importing them here keeps one entry point."""
    from vaedx.cli.data import app as data_app
    from vaedx.cli.demo import demo
    from vaedx.cli.detect import detect_command
    from vaedx.cli.diagnose import app as diagnose_app
    from vaedx.cli.evaluate import app as evaluate_app
    from vaedx.cli.export import export_command
    from vaedx.cli.report import report_command
    from vaedx.cli.serve import serve_command

    app.add_typer(data_app, name="data", help="Index, prepare and inspect image data sets.")
    app.command("demo")(demo)
    app.command("detect")(detect_command)
    app.add_typer(diagnose_app, name="diagnose", help="Diagnose from latent features: fit and predict.")
    app.add_typer(evaluate_app, name="evaluate", help="Evaluate predictions against ground truth.")
    app.command("serve")(serve_command)
    app.command("export")(export_command)
    app.command("report")(report_command)


_register()


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        from vaedx.version import __version__

        typer.echo(__version__)
        raise typer.Exit()


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, standalone_mode=True)
    except VaedxError as e:
        if os.environ.get("VAEDX_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        return 130
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
