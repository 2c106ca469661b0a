"""`kubectl proxydoctor tui`: browse the node's services, drift, rules and traces interactively."""

from __future__ import annotations

import sys
from pathlib import Path

from kubectl_proxydoctor.cli.app import app
from kubectl_proxydoctor.cli.common import FromOpt, SampleOpt, load_node
from kubectl_proxydoctor.errors import ProxyDoctorError, UsageError


def load_cluster(snapshot, live: bool):
    """The API objects: the capture's api.json offline, the API server when live (None if unread)."""
    from kubectl_proxydoctor.cluster import ClusterState

    if not live:
        text = snapshot.text("api.json")
        if text is None:
            return None
        return ClusterState.from_json_text(text, origin=f"{snapshot.origin}/api.json")
    try:
        from kubectl_proxydoctor.collect.api import read_cluster
    except ModuleNotFoundError:
        return None
    return read_cluster(node_name=snapshot.node)


def build_report(from_path: Path | None, sample: bool):
    """Collect (or read) the node and analyse it: the same NodeReport `check` shows."""
    snapshot = load_node(from_path, sample)
    cluster = load_cluster(snapshot, live=from_path is None and not sample)
    try:
        from kubectl_proxydoctor.analysis import analyse
    except ModuleNotFoundError as e:
        raise ProxyDoctorError(f"analysis is not available in this build ({e.name})") from e
    return analyse(snapshot, cluster, node_name=None)


ON_A_NODE = (
    "On a node (a TTY in a debug container, root in the host's network namespace): "
    "kubectl debug node/NAME -it --profile=sysadmin --image=IMAGE -- kubectl-proxydoctor tui "
    "(IMAGE built from the Dockerfile)."
)


@app.command("tui", epilog=ON_A_NODE)
def tui(from_path: FromOpt = None, sample: SampleOpt = False) -> None:
    """Browse the node interactively: services, drift, raw rules, traces (keys: ? for help)."""
    if from_path is not None and sample:
        raise UsageError("--from and --sample exclude each other")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("tui needs a terminal (use -it with kubectl debug); for scripts use `check -o json`")
    from kubectl_proxydoctor.tui.app import ProxyDoctorApp

    live = from_path is None and not sample
    origin = "live" if live else ("sample" if sample else str(from_path))
    ProxyDoctorApp(lambda: build_report(from_path, sample), live=live, origin=origin).run()
