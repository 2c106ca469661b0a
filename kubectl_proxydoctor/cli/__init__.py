"""Command line entry point: `kubectl proxydoctor ...` (console script kubectl-proxydoctor)."""

from __future__ import annotations

import importlib
import sys

# each module registers its commands on cli.app.app; heavy libraries are imported inside commands
COMMAND_MODULES = ("status", "collect", "trace", "check", "svc", "migrate", "tui", "scan", "serve")


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; the tool's own errors become one line on stderr and their exit code."""
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
