"""How the CLI fails: one plain line on stderr (`error: ...`) naming the problem and what to do, and a
documented exit code, never a traceback nor a box; user input is printed as it is (no markup, no emoji).

Exit codes of `run.py`:

    0    done (a sweep whose rows are ok, unsupported, unavailable, oom, error or timeout)
    1    `check`: a backend was incorrect or failed; an unexpected internal error (ATTNBENCH_DEBUG=1 shows
         its traceback)
    2    bad input: an option, a value, a subcommand, a results file, or a write that failed (nothing changed)
    3    a sweep stored at least one `incorrect` row: a wrong answer never ends as success
    130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM: every finished row is kept, the resume command printed
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable, Sequence

EXIT_BAD_INPUT = 2
EXIT_INCORRECT = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class SweepError(RuntimeError):
    """A measuring worker that cannot start (or died while starting): one line, with its log's path."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt so that both take the same path."""


def one_line(text: str) -> str:
    """A message as one line: its lines joined, surrounding space dropped."""
    return "; ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def error(message: str) -> None:
    """`error: MESSAGE` on stderr, as plain text."""
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    """A plain line on stderr that is not an error (the resume hint, the failure summary)."""
    print(message, file=sys.stderr, flush=True)


def friendly_errors(command):
    """A command whose bad input (a SpecError, a bad results file, a ValueError, an OSError, a worker that cannot
    start) ends with one plain line on stderr naming the field, exit 2, not a traceback."""
    import typer

    from specs import SpecError

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (SpecError, ValueError, SweepError) as exc:  # a StoreError is a ValueError
            error(str(exc))
        except OSError as exc:  # a file that cannot be read or written, said in one line
            error(describe_os_error(exc))
        raise typer.Exit(EXIT_BAD_INPUT)

    return wrapper


def describe_os_error(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else ""
    what = exc.strerror or type(exc).__name__
    return f"{where}: {what}" if where else what


def terminate_as_interrupt() -> Callable[[], None]:
    """Until the returned function is called, SIGTERM raises `Terminated` in the main thread, so a
    terminated sweep keeps its rows, stops its workers and prints the resume command as Ctrl-C does."""
    if sys.platform == "win32" or signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return lambda: None

    def handler(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous)


def main(app, argv: Sequence[str] | None = None, prog_name: str = "run.py") -> int:
    """Run the typer APP and return its exit code; a usage error (an unknown option, subcommand or
    choice, a bad number) is one line naming it, exit 2."""
    try:
        from typer._click import exceptions as click  # typer >= 0.26 carries its own click
    except ImportError:
        from click import exceptions as click

    try:
        result = app(args=list(argv) if argv is not None else None, prog_name=prog_name, standalone_mode=False)
    except click.NoArgsIsHelpError as exc:  # `run.py` alone: the help, as asked
        print(exc.ctx.get_help() if exc.ctx else str(exc))
        return 0
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else prog_name
        message = exc.format_message().replace("Value error, ", "")
        error(f"{message} (`{command} --help` lists what is allowed)")
        return exc.exit_code
    except click.ClickException as exc:
        error(exc.format_message())
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback for a user
        if os.environ.get("ATTNBENCH_DEBUG"):
            raise
        error(f"internal error: {type(exc).__name__}: {exc} (run again with ATTNBENCH_DEBUG=1 for the traceback)")
        return 1
    return result if isinstance(result, int) else 0
