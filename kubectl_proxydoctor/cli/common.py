"""Options and helpers shared by the commands (kept free of heavy imports)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from kubectl_proxydoctor.errors import UsageError

FromOpt = Annotated[
    Path | None,
    typer.Option("--from", help="Read a capture (directory or .tar.gz) instead of the live node."),
]
SampleOpt = Annotated[
    bool, typer.Option("--sample", help="Use the sample node shipped with the tool (a capture with drift).")
]
OutputOpt = Annotated[str, typer.Option("-o", "--output", help="Output format: table or json.")]
NodeOpt = Annotated[
    str | None,
    typer.Option("--node", help="Collect from this node through a short-lived pod (needs the API)."),
]
ImageOpt = Annotated[
    str | None,
    typer.Option("--image", help="Image of the collector pod (needs iptables, nft, ipset, ipvsadm)."),
]
KubeconfigOpt = Annotated[str | None, typer.Option("--kubeconfig", help="Path(s) to kubeconfig files.")]
ContextOpt = Annotated[str | None, typer.Option("--context", help="The kubeconfig context to use.")]


def sample_path() -> Path:
    """The embedded sample capture (a real kube-proxy v1.30 node with a stale endpoint)."""
    return Path(str(resources.files("kubectl_proxydoctor") / "sample"))


def check_output(output: str, allowed: tuple[str, ...] = ("table", "json")) -> str:
    if output not in allowed:
        raise UsageError(f"unknown output format {output!r}; use one of: {', '.join(allowed)}")
    return output


def load_node(from_path: Path | None, sample: bool = False, node: str | None = None, *,
              kubeconfig: str | None = None, context: str | None = None, image: str | None = None,
              quiet: bool = False):
    """The node snapshot to work on: a capture, the sample, a remote node through a collector
    pod (``node``), or the live node this runs on (read-only). ``quiet``: no progress on stderr
    (the TUI draws there)."""
    from kubectl_proxydoctor.snapshot import NodeSnapshot

    if sum((from_path is not None, sample, node is not None)) > 1:
        raise UsageError("--from, --sample and --node exclude each other")
    if sample:
        return NodeSnapshot.load(sample_path())
    if from_path is not None:
        return NodeSnapshot.load(from_path)
    if node is not None:
        return collect_remote_node(node, kubeconfig=kubeconfig, context=context, image=image, quiet=quiet)
    from kubectl_proxydoctor.collect.node import collect_node

    return collect_node()


def capture_cluster(snapshot):
    """The API objects of a capture (its api.json, decoded once per snapshot: cluster.of_capture),
    or None when it has none."""
    from kubectl_proxydoctor.cluster import of_capture

    return of_capture(snapshot)


def offline_state(snapshot, notes: list[str]):
    """The node's NodeState for the commands that read no live API (`status`, `trace`): the
    capture's api.json, when it has one, is the cluster, as for `check --from`; one that cannot be
    read or used (a malformed object: ParseError) is a note, not a failure: those commands do not
    need it, and read the node's rules without it as they always did."""
    from kubectl_proxydoctor.errors import ProxyDoctorError
    from kubectl_proxydoctor.node_state import build_node_state

    try:
        cluster = capture_cluster(snapshot)
        if cluster is not None:
            return build_node_state(snapshot, cluster)
    except ProxyDoctorError as e:
        notes.append(f"api.json not used: {e}")
    return build_node_state(snapshot, None)


def collect_remote_node(node: str, *, kubeconfig: str | None = None, context: str | None = None,
                        image: str | None = None, quiet: bool = False, with_conntrack: bool = False):
    """Capture ``node`` through a collector pod, telling the user on stderr what happens."""
    import sys

    from kubectl_proxydoctor.collect.api import load_client
    from kubectl_proxydoctor.remote.run import RemoteOptions, collect_remote

    target = load_client(kubeconfig, context)
    options = RemoteOptions(log=(lambda _m: None) if quiet else (lambda m: print(m, file=sys.stderr)),
                            with_conntrack=with_conntrack)
    if image:
        options.image = image
    try:
        return collect_remote(node, target.client, options)
    finally:
        target.client.close()
