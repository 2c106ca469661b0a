"""`kubectl proxydoctor tui`: browse the node's services, drift, rules and traces interactively."""

from __future__ import annotations

import sys
from pathlib import Path

from kubectl_proxydoctor.cli.app import app
from kubectl_proxydoctor.cli.check import ContextOpt, KubeconfigOpt
from kubectl_proxydoctor.cli.common import FromOpt, ImageOpt, NodeOpt, SampleOpt
from kubectl_proxydoctor.errors import EXIT_UNREADABLE, BundleError, UsageError

ON_A_NODE = (
    "On a node (a TTY in a debug container, root in the host's network namespace): "
    "kubectl debug node/NAME -it --profile=sysadmin --image=IMAGE -- kubectl-proxydoctor tui "
    "(IMAGE built from the Dockerfile)."
)


def build_report(from_path: Path | None, sample: bool, kubeconfig: Path | None = None,
                 context: str | None = None, node: str | None = None, image: str | None = None):
    """Collect (or read) the node and the API and analyse them: exactly the NodeReport `check` shows."""
    from kubectl_proxydoctor.cli.check import run_analysis

    return run_analysis(from_path, sample, kubeconfig, context, None, False, None, node, image, quiet=True)


@app.command("tui", epilog=ON_A_NODE)
def tui(
    from_path: FromOpt = None,
    sample: SampleOpt = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    node: NodeOpt = None,
    image: ImageOpt = None,
) -> None:
    """Browse the node interactively: services, drift, raw rules, traces (keys: ? for help)."""
    if sum((from_path is not None, sample, node is not None)) > 1:
        raise UsageError("--from, --sample and --node exclude each other")
    if from_path is not None and not from_path.exists():
        raise BundleError(f"{from_path}: no such file or directory")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("tui needs a terminal (use -it with kubectl debug); for scripts use `check -o json`")
    from kubectl_proxydoctor.tui.app import ProxyDoctorApp

    live = from_path is None and not sample
    origin = f"node/{node}" if node else ("live" if live else ("sample" if sample else str(from_path)))
    app = ProxyDoctorApp(lambda: build_report(from_path, sample, kubeconfig, context, node, image), live=live,
                         origin=origin)
    app.run()
    if app.report is None and app.error:  # the node or the API could not be read: as the other commands
        print(f"kubectl-proxydoctor: {app.error}", file=sys.stderr)
        raise SystemExit(EXIT_UNREADABLE)
