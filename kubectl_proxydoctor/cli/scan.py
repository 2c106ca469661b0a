"""`scan`: collect and check every (selected) node through collector pods."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from kubectl_proxydoctor.cli.app import app
from kubectl_proxydoctor.cli.common import ContextOpt, ImageOpt, KubeconfigOpt, OutputOpt, check_output


@app.command()
def scan(
    selector: Annotated[
        str | None, typer.Option("--selector", "-l", help="Only nodes with these labels.")
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Nodes collected at once.")] = 10,
    output: OutputOpt = "table",
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    image: ImageOpt = None,
    pod_namespace: Annotated[str, typer.Option("--pod-namespace", help="Namespace of the collector pods.")]
    = "kube-system",
) -> None:
    """Check every node of the cluster (or those matching --selector) through collector pods."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from kubectl_proxydoctor.analysis import analyse
    from kubectl_proxydoctor.collect.api import ApiReader, load_client, read_cluster
    from kubectl_proxydoctor.errors import ProxyDoctorError, UsageError
    from kubectl_proxydoctor.remote.run import RemoteOptions, collect_remote
    from kubectl_proxydoctor.remote.scan import scan as run_scan
    from kubectl_proxydoctor.render.scan_text import node_line, render_scan

    check_output(output)
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    target = load_client(kubeconfig, context)
    try:
        items, status = ApiReader(target).list_nodes(selector)
    finally:
        target.client.close()
    if status != "ok":
        raise ProxyDoctorError(f"cannot scan: {status}")
    nodes = [item["metadata"]["name"] for item in items]
    cluster = read_cluster(kubeconfig, context)
    options = RemoteOptions(namespace=pod_namespace)
    if image:
        options.image = image

    def collect(node: str):
        per_node = load_client(kubeconfig, context)
        try:
            return collect_remote(node, per_node.client, options)
        finally:
            per_node.client.close()

    def check(snapshot, node: str):
        return analyse(snapshot, cluster, node_name=node)

    console = Console(stderr=output == "json")
    with Progress(TextColumn("scanning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("nodes", total=len(nodes))

        def done(summary) -> None:
            progress.console.print(node_line(summary))
            progress.advance(task)

        result = run_scan(nodes, collect, check, concurrency=concurrency, on_done=done)
    if output == "json":
        json.dump(result.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        render_scan(result, console)
    raise typer.Exit(result.exit_code)
