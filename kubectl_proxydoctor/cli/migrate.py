"""`kubectl proxydoctor migrate-check nftables|iptables`: is it safe to change kube-proxy's mode?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kubectl_proxydoctor.cli.app import app
from kubectl_proxydoctor.cli.common import ImageOpt, SampleOpt, check_output, collect_remote_node, sample_path

TargetArg = Annotated[
    str, typer.Argument(help="The mode to switch to: nftables, or iptables (to leave IPVS).")
]
FromManyOpt = Annotated[
    list[Path] | None,
    typer.Option("--from", help="A node capture (directory or .tar.gz); repeat for several nodes."),
]
KubeconfigOpt = Annotated[
    str | None, typer.Option("--kubeconfig", help="Read the live API with this kubeconfig.")
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="Kubeconfig context to use.")]
OutputOpt = Annotated[str, typer.Option("-o", "--output", help="Output format: table or json.")]
VerboseOpt = Annotated[bool, typer.Option("-v", "--verbose", help="Show every evidence line.")]


def read_live_cluster(kubeconfig: str | None, context: str | None):
    """The API state (Services, kube-proxy objects) plus every Node, for the cluster-wide view."""
    from kubectl_proxydoctor.collect import api

    cluster = api.read_cluster(kubeconfig, context)
    target = api.load_client(kubeconfig, context)
    try:
        reader = api.ApiReader(target)
        cluster.nodes, cluster.sources["list nodes"] = reader.list_nodes()
    finally:
        target.client.close()
    return cluster


def _merge_nodes(cluster, snapshots, decoded) -> None:
    """Add Node objects other captures' api.json hold (one capture per node); ``decoded``: the
    capture whose api.json is ``cluster`` (not decoded again)."""
    from kubectl_proxydoctor.cluster import of_capture

    have = {n["metadata"].get("name") for n in cluster.nodes}
    for snap in snapshots:
        if snap is decoded or not snap.text("api.json"):
            continue
        other = of_capture(snap)  # each capture's api.json decoded once per snapshot
        for node in other.nodes if other is not None else []:
            if node["metadata"].get("name") not in have:
                cluster.nodes.append(node)
                have.add(node["metadata"].get("name"))


def load_inputs(from_paths: list[Path], sample: bool, kubeconfig: str | None, context: str | None,
                nodes: list[str] | None = None, image: str | None = None):
    """(snapshots, cluster or None, notes) from captures, remote nodes and/or the live API."""
    from kubectl_proxydoctor.errors import UsageError
    from kubectl_proxydoctor.snapshot import NodeSnapshot

    if sample and from_paths:
        raise UsageError("--from and --sample exclude each other")
    paths = [sample_path()] if sample else list(from_paths)
    snapshots = [NodeSnapshot.load(p) for p in paths]
    snapshots += [collect_remote_node(n, kubeconfig=kubeconfig, context=context, image=image,
                                      with_conntrack=True) for n in nodes or []]
    notes: list[str] = []
    cluster = None
    if kubeconfig is not None or context is not None or nodes or not snapshots:
        cluster = read_live_cluster(kubeconfig, context)
        if not snapshots:
            snapshots += _live_node(cluster, notes)
    else:
        first = next((s for s in snapshots if s.text("api.json")), None)
        if first is None:
            notes.append("no capture has api.json and no --kubeconfig was given: API checks could not run")
        else:
            from dataclasses import replace

            from kubectl_proxydoctor.cluster import of_capture

            decoded = of_capture(first)  # decoded once per snapshot, shared: merge Nodes into a copy
            cluster = replace(decoded, nodes=list(decoded.nodes)) if decoded is not None else None
            _merge_nodes(cluster, snapshots, first)
    return snapshots, cluster, notes


def _live_node(cluster, notes: list[str]) -> list:
    """This host, read-only, when it is one of the cluster's nodes (so node checks can run live)."""
    import os
    import socket

    name = socket.gethostname()
    if not cluster.nodes:
        notes.append("no Node objects were read, so this host cannot be matched to a node: "
                     "node-level checks need --from captures")
        return []
    if cluster.node(name) is None:
        notes.append(f"this host ({name}) is not a cluster node: node-level checks need --from captures")
        return []
    if os.geteuid() != 0:
        notes.append(f"this host is node {name}, but reading its rules needs root: node-level checks skipped")
        return []
    from kubectl_proxydoctor.collect.node import collect_node

    return [collect_node(with_conntrack=True, node_name=name)]


@app.command("migrate-check")
def migrate_check_cmd(
    target: TargetArg,
    from_paths: FromManyOpt = None,
    sample: SampleOpt = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    output: OutputOpt = "table",
    verbose: VerboseOpt = False,
    node: Annotated[list[str] | None, typer.Option(
        "--node", help="Collect this node through a short-lived pod (repeatable).")] = None,
    image: ImageOpt = None,
) -> None:
    """Is this cluster / node ready to switch kube-proxy to TARGET mode (nftables, or iptables)?

    Checks kernel and nft, NodePort addresses, localhost NodePorts, host firewalls, conntrack,
    third-party rules in KUBE-* chains, kube-proxy version and config, IPVS schedulers; prints a
    plan. Exit 0 ready, 1 not ready, 2 usage error, 3 could not tell.
    """
    from kubectl_proxydoctor.errors import UsageError
    from kubectl_proxydoctor.migrate.engine import TARGETS, check_readiness

    check_output(output)
    if target not in TARGETS:
        raise UsageError(f"unknown target mode {target!r}; use one of: {', '.join(TARGETS)}")
    snapshots, cluster, notes = load_inputs(list(from_paths or []), sample, kubeconfig, context,
                                            list(node or []), image)
    readiness = check_readiness(target, cluster, snapshots, notes)
    if output == "json":
        import json

        typer.echo(json.dumps(readiness.to_json(), indent=2))
    else:
        from rich.console import Console

        from kubectl_proxydoctor.render.migrate_text import render_readiness

        render_readiness(readiness, Console(highlight=False), verbose)
    raise typer.Exit(readiness.exit_code)
