"""What every ``mkailin`` command module shares: the app object, the error handling group, and
the common options. ``cli`` and ``cli_mesh`` import it; it imports neither."""

from __future__ import annotations

import click

from mkailin.errors import ENV_FAULTS, MkailinError
from mkailin.secrets import redact


class App:
    """What every command shares: where the lake is and which config to use."""

    def __init__(
        self, lake_path: str | None, config_path: str | None, lock_wait: float | None = None
    ):
        self._lake_path = lake_path
        self.config_path = config_path
        self.lock_wait = lock_wait  # --wait (or MKAILIN_LOCK_WAIT, through click)
        self._config = None

    @property
    def config(self):
        if self._config is None:
            from mkailin import config

            self._config = config.load(self.config_path)
        return self._config

    @property
    def lake_path(self) -> str:
        if self._lake_path:
            return self._lake_path
        if self.config_path:
            return self.config.lake
        return "lake"

    def lake(self, create: bool = False, path: str | None = None):
        """The lake (``path``, else the --lake / config one), with --wait applied."""
        from mkailin.lake import Lake

        lake = Lake.open(path or self.lake_path, create=create)
        if self.lock_wait is not None:
            lake.lock_wait = self.lock_wait
        return lake


CATALOG_NAME = "mkailin.duckdb"
INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class MkailinGroup(click.Group):
    """Turns the library's named errors into ``Error: …`` and a non-zero exit, and Ctrl-C into
    ``Interrupted.`` and exit code 130 (click's own handling would say ``Aborted!`` and exit 1)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MkailinError as e:
            raise click.ClickException(redact(str(e))) from None
        except OSError as e:
            if e.errno not in ENV_FAULTS:
                raise
            where = f" ({redact(str(e.filename))})" if e.filename else ""
            raise click.ClickException(
                f"{ENV_FAULTS[e.errno]}{where}: the command stopped; what it had not committed"
                " is not in the lake, and the lake holds every row it held before"
            ) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(INTERRUPTED_EXIT)


pass_app = click.make_pass_decorator(App)


def format_option(f):
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "csv", "json"]),
        default="table",
        show_default=True,
        help="Output format.",
    )(f)


def echo_summary(summary) -> None:
    for line in summary.lines():
        click.echo(line)
    if summary.errors:
        for e in summary.errors:
            click.echo(f"  fault: {redact(e)}", err=True)
        raise click.ClickException(
            f"{len(summary.errors)} file(s) had faults; good records were kept and the rest "
            'quarantined (see: mkailin sql "select * from quarantine")'
        )


def from_run_option(f):
    return click.option(
        "--from-run",
        "from_run",
        help="Read the upstream output of this run (default: the newest that fits; the command "
        "prints which it read).",
    )(f)
