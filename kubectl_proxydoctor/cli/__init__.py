"""Command line entry point: `kubectl proxydoctor ...` (console script kubectl-proxydoctor)."""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading
from typing import NoReturn

# each module registers its commands on cli.app.app; heavy libraries are imported inside commands
COMMAND_MODULES = ("status", "collect", "trace", "check", "svc", "migrate", "tui", "scan", "serve")


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise


CONSOLE_NAMES = ("kubectl-proxydoctor", "kubectl-proxydoctor.exe")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; the tool's own errors become one line on stderr and their exit code.

    As the console script (no ``argv``, the program named kubectl-proxydoctor) the process then
    ends at once (``run``); called in-process (tests) it returns or raises SystemExit as usual."""
    if argv is None and os.path.basename(sys.argv[0] if sys.argv else "") in CONSOLE_NAMES:
        run()
    _main(argv)


def run(argv: list[str] | None = None) -> NoReturn:
    """The process entry point (console script, ``python -m``): the CLI, then exit without freeing
    every object one by one (a 10k-service node's rules are millions; freeing them takes 0.3 s)."""
    code: int = 0
    try:
        _main(argv)
    except SystemExit as e:
        if isinstance(e.code, int):
            code = e.code
        elif e.code is not None:
            print(e.code, file=sys.stderr)
            code = 1
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    """Run the atexit handlers (e.g. the single-file build's removal of its private copy), flush
    stdout and stderr, then end the process with ``code`` (os._exit) without freeing every object;
    while another non-daemon thread still runs, the ordinary exit (which waits for it) instead."""
    if any(t is not threading.current_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if run_exitfuncs is None:  # not CPython: the ordinary exit
        sys.exit(code)
    run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or a closed stream
            pass
    os._exit(code)


def _main(argv: list[str] | None) -> None:
    from kubectl_proxydoctor.cli.app import app
    from kubectl_proxydoctor.errors import EXIT_UNREADABLE, ProxyDoctorError

    _register()
    try:
        app(args=argv, prog_name="kubectl-proxydoctor", standalone_mode=True)
    except ProxyDoctorError as e:
        print(f"kubectl-proxydoctor: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except Exception as e:  # an API or network error no command caught: one line, exit 3
        line = _api_failure_line(e)
        if line is None:
            raise
        print(f"kubectl-proxydoctor: {line}", file=sys.stderr)
        sys.exit(EXIT_UNREADABLE)
    except KeyboardInterrupt:
        print("kubectl-proxydoctor: interrupted", file=sys.stderr)
        sys.exit(130)


def _api_failure_line(e: Exception) -> str | None:
    """The one line for an API client error no command caught (the kubernetes client's, urllib3's
    or the exec WebSocket's), else None: any other exception is a bug and keeps its traceback."""
    if "kubernetes" not in sys.modules:
        return None
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if not (isinstance(e, ApiException | HTTPError) or type(e).__module__.startswith("websocket")):
        return None
    from kubectl_proxydoctor.collect.api import request_failure

    return request_failure(e, "API request", "the API server")
