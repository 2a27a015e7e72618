"""The console entry point: the one place that turns errors into exit codes."""

from __future__ import annotations

import os
import signal
import sys
import threading

import click

from migrator.cli.output import _remember_secrets, _scrubbed_output
from migrator.cli.root import EXIT_BUG, cli
from migrator.envs.forkserver import worker_session
from migrator.errors import MigratorError, remember_secret, scrub, secret_scope

#: Exit status after SIGTERM (128 + 15, what a shell reports for a terminated job).
EXIT_TERMINATED = 143


class _Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C so that every cleanup runs."""


def _on_sigterm(signum: int, frame: object) -> None:
    # A second SIGTERM kills at once, as before: a cleanup that hangs is not a trap.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise _Terminated


def _unwind_on_sigterm() -> None:
    """Make SIGTERM (``timeout``, a cancelled CI job, a deploy hook) unwind like Ctrl-C.

    By default SIGTERM ends the process on the spot: its ephemeral Postgres keeps
    running, worker processes (in their own sessions) keep writing, and a fallback's
    shadow schema stays. Raised as an interrupt instead, the ``finally`` blocks kill
    the workers, drop the shadow schema and stop the server. Left alone when the
    embedding program has its own handler.
    """
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)


def _remember_given_secrets(argv: list[str]) -> None:
    """Passwords the user handed us, however malformed the DSN: the argv and environment."""
    _remember_secrets(argv)
    _remember_secrets(os.environ.values())
    if os.environ.get("PGPASSWORD"):
        remember_secret(os.environ["PGPASSWORD"])


def main(argv: list[str] | None = None) -> None:
    """Console entry point: the one place that maps errors to exit codes.

    Everything printed from here on, an error's text included, passes
    :func:`migrator.errors.scrub`: no password reaches the terminal.
    """
    args = argv if argv is not None else sys.argv[1:]
    # One worker fork server per version environment for the whole command.
    with secret_scope(), _scrubbed_output(), worker_session():
        _remember_given_secrets(args)
        _main(args, raiseerr="--raiseerr" in args)


def _main(argv: list[str], *, raiseerr: bool) -> None:
    _unwind_on_sigterm()
    try:
        rc = cli.main(args=argv, prog_name="langgraph-migrator", standalone_mode=False)
    except click.exceptions.Abort as exc:
        # What the interrupted command said about the state it left (its note), if it did.
        notes = getattr(exc.__cause__, "__notes__", None) or []
        if isinstance(exc.__cause__, _Terminated):
            said = notes[0] if notes else "workers stopped, temporary state removed."
            click.echo(f"terminated (SIGTERM): {said}", err=True)
            sys.exit(EXIT_TERMINATED)
        click.echo(notes[0] if notes else "aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MigratorError as exc:
        if raiseerr:
            # Printed here, not re-raised: the traceback must pass the filter too.
            import traceback

            traceback.print_exc()
        click.echo(scrub(f"error: {exc}"), err=True)
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001 - the one place that turns a bug into exit 70
        import traceback

        traceback.print_exc()
        click.echo(
            "error: unexpected failure (a bug in langgraph-migrator); "
            "please report it with the traceback above.",
            err=True,
        )
        sys.exit(EXIT_BUG)
    sys.exit(rc if isinstance(rc, int) else 0)
