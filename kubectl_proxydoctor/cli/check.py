"""`kubectl proxydoctor check`: every service port on the node against the API, with findings."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Annotated

import typer

from kubectl_proxydoctor.cli.app import app
from kubectl_proxydoctor.cli.common import FromOpt, ImageOpt, NodeOpt, SampleOpt, check_output, load_node

OUTPUTS = ("table", "json", "yaml")

OutputOpt = Annotated[str, typer.Option("-o", "--output", help="Output format: table, json or yaml.")]
KubeconfigOpt = Annotated[
    Path | None,
    typer.Option("--kubeconfig", help="Kubeconfig file(s) for the live API (default $KUBECONFIG)."),
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="Kubeconfig context to use.")]
NamespaceOpt = Annotated[
    str | None, typer.Option("-n", "--namespace", help="Only Services in this namespace (default: all).")
]
AllNamespacesOpt = Annotated[
    bool, typer.Option("-A", "--all-namespaces", help="Services in every namespace.")
]
NpdOpt = Annotated[bool, typer.Option(
    "--npd", help="node-problem-detector plugin mode: one short line; exit 0 OK, 1 problem, 2 unknown.")]
NodeNameOpt = Annotated[
    str | None, typer.Option("--node-name", help="The node's name in the API (default: from the capture).")
]


def load_sources(
    from_path: Path | None,
    sample: bool,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    node_name: str | None,
    remote_node: str | None = None,
    image: str | None = None,
    quiet: bool = False,
):
    """(snapshot, cluster or None, notes): the node (a capture, the sample, a remote node through a
    collector pod, or this host), and the API from the capture or the live server. ``quiet``: nothing
    on stderr (the TUI draws there; the report's notes say the same)."""
    from kubectl_proxydoctor.cluster import ClusterState
    from kubectl_proxydoctor.errors import ProxyDoctorError, UsageError

    snapshot = load_node(from_path, sample, remote_node, kubeconfig=str(kubeconfig) if kubeconfig else None,
                         context=context, image=image, quiet=quiet)
    notes: list[str] = []
    offline = from_path is not None or sample
    node = node_name or remote_node or snapshot.node
    if offline and kubeconfig is None and context is None:
        from kubectl_proxydoctor.cli.common import capture_cluster

        cluster = capture_cluster(snapshot)
        if cluster is None:
            notes.append("the capture has no api.json (and no --kubeconfig was given): API not read")
            return snapshot, None, notes
        if namespace:  # a filtered copy: the decoded capture is shared (cluster.of_capture)
            from dataclasses import replace

            def mine(objects: list[dict]) -> list[dict]:
                return [o for o in objects if o["metadata"].get("namespace") == namespace]

            cluster = replace(cluster, services=mine(cluster.services),
                              endpointslices=mine(cluster.endpointslices), sources=dict(cluster.sources))
        return snapshot, cluster, notes
    if namespace is not None and not namespace:
        raise UsageError("-n/--namespace needs a namespace name")
    from kubectl_proxydoctor.collect.api import read_cluster

    try:
        cluster = read_cluster(str(kubeconfig) if kubeconfig else None, context, namespace, node)
    except ProxyDoctorError as e:  # no usable credentials: the node-only checks still run (exit 3)
        cluster = ClusterState(origin="live", sources={"list services": f"not read: {e}"})
    from kubectl_proxydoctor.analysis import api_problem

    problem = api_problem(cluster)
    if problem and not quiet:
        print(f"kubectl-proxydoctor: API not usable ({problem}): only node-only checks ran", file=sys.stderr)
    return snapshot, cluster, notes


def run_analysis(
    from_path: Path | None,
    sample: bool,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    all_namespaces: bool,
    node_name: str | None,
    remote_node: str | None = None,
    image: str | None = None,
    quiet: bool = False,
):
    """Load the node and the API, and analyse; the shared core of `check`, `svc` and `tui`."""
    from kubectl_proxydoctor.analysis import analyse
    from kubectl_proxydoctor.errors import UsageError
    from kubectl_proxydoctor.gcpause import gc_paused

    if namespace and all_namespaces:
        raise UsageError("-n/--namespace and -A/--all-namespaces exclude each other")
    with gc_paused():
        snapshot, cluster, notes = load_sources(from_path, sample, kubeconfig, context, namespace, node_name,
                                                remote_node, image, quiet)
        report = analyse(snapshot, cluster, node_name or remote_node, namespace=namespace)
    report.notes.extend(notes)
    return report


@app.command("check")
def check_cmd(
    from_path: FromOpt = None,
    sample: SampleOpt = False,
    output: OutputOpt = "table",
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    all_namespaces: AllNamespacesOpt = False,
    node_name: NodeNameOpt = None,
    node: NodeOpt = None,
    image: ImageOpt = None,
    npd: NpdOpt = False,
) -> None:
    """Compare every service port kube-proxy programmed on the node with the API.

    Exit 0 clean, 1 drift (error findings), 3 when the API could not be read (node-only checks ran).
    With --npd: node-problem-detector's contract (0 OK, 1 problem, 2 unknown, one line on stdout).
    """
    if npd:
        _npd(from_path, sample, kubeconfig, context, namespace, all_namespaces, node_name, node, image)
    check_output(output, OUTPUTS)
    gc.disable()  # a one-shot process: full GC passes over a big node's objects only cost time
    report = run_analysis(from_path, sample, kubeconfig, context, namespace, all_namespaces, node_name,
                          node, image)
    if output == "table":
        from rich.console import Console

        from kubectl_proxydoctor.render.report_text import render_check

        render_check(report, Console(highlight=False))
    else:
        from kubectl_proxydoctor.render.structured import render

        typer.echo(render(report, output), nl=False)
    raise typer.Exit(report.exit_code)


def _npd(*args) -> None:
    """Run the analysis for node-problem-detector: anything that stops it is "unknown" (2), never
    "problem" (1), so NPD does not set the condition on a failure to look."""
    from kubectl_proxydoctor.serve.npd import npd_answer, npd_failure

    try:
        code, line = npd_answer(run_analysis(*args))
    except Exception as e:  # noqa: BLE001 - NPD's contract: every failure to check is exit 2
        code, line = npd_failure(e)
    typer.echo(line)
    raise typer.Exit(code)
