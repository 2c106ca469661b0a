"""`kubectl proxydoctor svc NAME`: one Service end to end (API, rules per mode, traces, findings)."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Annotated

import typer

from kubectl_proxydoctor.cli.app import app
from kubectl_proxydoctor.cli.check import (
    ContextOpt,
    KubeconfigOpt,
    NodeNameOpt,
    OutputOpt,
    run_analysis,
)
from kubectl_proxydoctor.cli.common import FromOpt, ImageOpt, NodeOpt, SampleOpt, check_output

if TYPE_CHECKING:
    from kubectl_proxydoctor.model import Packet, TraceResult
    from kubectl_proxydoctor.report import NodeReport


def trace_modes(report: NodeReport, packet: Packet, label: str) -> list[TraceResult]:
    """The packet through every mode with a tracer (tracing.trace_modes; a failure is a note)."""
    from kubectl_proxydoctor.tracing import trace_modes as trace_all_modes

    results: list[TraceResult] = []
    for traced in trace_all_modes(report.snapshot, packet):
        if traced.error is not None:
            report.notes.append(f"{traced.mode} trace of {label} failed: {traced.error}")
        results.extend(r for r in traced.results if r.outcomes)
    return results


def service_traces(report, namespace: str, name: str) -> dict:
    """Frontend -> TraceResults of a packet without a source (the --all view)."""
    from kubectl_proxydoctor.render.report_text import trace_packets

    return {label: trace_modes(report, packet, label)
            for label, packet in trace_packets(report, namespace, name).items()}


def planned_traces(report, namespace: str, name: str, facts) -> list:
    """(PlannedTrace, results): one trace per frontend and kind of source that matters."""
    from kubectl_proxydoctor.render.report_text import _node_ip, trace_packets
    from kubectl_proxydoctor.svc_plan import PlannedTrace, plan

    ports = report.expected.ports_of(f"{namespace}/{name}") if report.expected is not None else []
    planned = plan(ports, _node_ip(report), facts)
    if not planned:  # not in the API (deleted, or unread): the programmed frontends, no source
        planned = [PlannedTrace(label, "outside the node (no source: the Service is not in the API)", packet)
                   for label, packet in trace_packets(report, namespace, name).items()]
    return [(p, trace_modes(report, p.packet, f"{p.frontend} from {p.source}")) for p in planned]


@app.command("svc")
def svc_cmd(
    name: Annotated[str, typer.Argument(help="Service name.")],
    namespace: Annotated[str, typer.Option("-n", "--namespace", help="The Service's namespace.")] = "default",
    from_path: FromOpt = None,
    sample: SampleOpt = False,
    output: OutputOpt = "table",
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    node_name: NodeNameOpt = None,
    node: NodeOpt = None,
    image: ImageOpt = None,
    show_all: Annotated[bool, typer.Option(
        "--all", help="Every endpoint and every outcome's rules, one trace per frontend (long for big "
                      "Services).")] = False,
) -> None:
    """One Service end to end: API view, what each mode programmed, a trace per frontend, findings.

    Exit 0 clean, 1 drift on this Service, 3 when the API could not be read.
    """
    from kubectl_proxydoctor.errors import UsageError

    check_output(output, ("table", "json", "yaml"))
    gc.disable()  # a one-shot process: full GC passes over a big node's objects only cost time
    report = run_analysis(from_path, sample, kubeconfig, context, namespace, False, node_name, node, image)
    key = f"{namespace}/{name}"
    report.services = [s for s in report.services if s.name.service == key]
    report.findings = [f for f in report.findings if f.service in (key, None)]
    known = report.expected is not None and key in report.expected.services
    services = report.cluster.services if report.cluster is not None else []
    in_api = any(f"{s['metadata'].get('namespace')}/{s['metadata'].get('name')}" == key for s in services)
    # only when both sides were read can "neither in the API nor programmed" be said
    if not (known or in_api) and not report.services and report.cluster is not None and not report.unreadable:
        raise UsageError(f"service {key} is neither in the API nor programmed on this node")
    if output == "table" and show_all:
        from rich.console import Console

        from kubectl_proxydoctor.render.report_text import render_service

        render_service(
            report, namespace, name, service_traces(report, namespace, name), Console(highlight=False)
        )
    elif output == "table":
        from rich.console import Console

        from kubectl_proxydoctor.render.svc_text import render_service_compact

        facts = report.state.facts  # from the cluster as read (api.json or the live API), decoded once
        render_service_compact(report, namespace, name, planned_traces(report, namespace, name, facts), facts,
                               Console(highlight=False))
    else:
        from kubectl_proxydoctor.render.structured import render

        typer.echo(render(report, output), nl=False)
    raise typer.Exit(report.exit_code)
