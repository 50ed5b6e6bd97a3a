"""The one place where ``tether`` turns an error into a line for the user and an exit code.

Every subcommand's handler runs through :func:`run_handler`: an error the project raises on
purpose (any :class:`~tether.protocol.errors.TetherError`: bad settings, a store made with other
shards, a port in use, an API refusal), an OS or connection error, and a bad ``--handlers``
module all end as ``tether <command>: <message>`` on stderr with exit code 2. Anything else is a
bug: one line too, naming the exception, and the traceback only with ``-v``.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable

import httpx

from tether.protocol.errors import TetherError

USAGE_EXIT = 2  # what argparse uses for a bad command line: the user can fix it
BUG_EXIT = 70  # EX_SOFTWARE
INTERRUPTED_EXIT = 130

Handler = Callable[[argparse.Namespace], int]

# Every error the project raises on purpose is a TetherError, whatever its code: its message is
# written for the person who reads it (a store made with other shards, a data directory in use,
# an API refusal), so the whole tree is a user error. The rest are errors of the world outside.
USER_ERRORS: tuple[type[BaseException], ...] = (
    TetherError,
    httpx.HTTPError,  # cannot reach the stack, or it answered nonsense
    ImportError,  # tether device --handlers module:attr
    OSError,  # ports, files, permissions; ConnectionError and TimeoutError are OSErrors
    sqlite3.Error,
)


def describe(exc: BaseException, args: argparse.Namespace) -> str:
    """One line: the error's own message, or what could not be reached."""
    if isinstance(exc, httpx.TransportError):
        where = getattr(args, "url", None) or _request_url(exc)
        return f"cannot reach {where}: {str(exc) or type(exc).__name__}"
    if isinstance(exc, httpx.HTTPError):
        return f"HTTP error: {exc}"
    return str(exc).strip() or type(exc).__name__


def _request_url(exc: httpx.TransportError) -> str:
    try:
        return str(exc.request.url)
    except RuntimeError:  # raised before a request was made
        return "the server"


def run_handler(handler: Handler, args: argparse.Namespace) -> int:
    prog = f"tether {args.command}"
    try:
        return handler(args)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except USER_ERRORS as exc:
        print(f"{prog}: {describe(exc, args)}", file=sys.stderr, flush=True)
        return USAGE_EXIT
    except Exception as exc:
        if getattr(args, "verbose", False):
            raise
        print(
            f"{prog}: unexpected {type(exc).__name__}: {describe(exc, args)} "
            "(a bug: run again with -v for the traceback)",
            file=sys.stderr,
            flush=True,
        )
        return BUG_EXIT
