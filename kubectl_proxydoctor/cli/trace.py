"""`kubectl proxydoctor trace`: one packet through the node's kube-proxy rules, every mode found."""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated

import typer

from kubectl_proxydoctor.cli.app import app
from kubectl_proxydoctor.cli.common import (
    ContextOpt,
    FromOpt,
    ImageOpt,
    KubeconfigOpt,
    NodeOpt,
    OutputOpt,
    SampleOpt,
    check_output,
    load_node,
)
from kubectl_proxydoctor.errors import UsageError
from kubectl_proxydoctor.exit_status import status_of

PROTOCOLS = ("tcp", "udp", "sctp")

DstOpt = Annotated[
    str, typer.Option("--dst", help="Destination IP:PORT, optionally /tcp, /udp or /sctp (default tcp); "
                                    "IPv6 addresses in brackets. Example: 10.96.0.10:53/udp.")
]
SrcOpt = Annotated[
    str | None,
    typer.Option("--src", help="Source: an IP, 'node' (this node's address) or a pod name from the API "
                               "(EndpointSlices). A node address traces locally generated traffic (nat "
                               "OUTPUT); default: a packet arriving from outside the node (nat PREROUTING)."),
]


def parse_destination(text: str):
    """'IP:PORT[/proto]' (or '[IPv6]:PORT[/proto]') into a Packet; UsageError when malformed."""
    from kubectl_proxydoctor.model import Packet

    spec, _, proto = text.strip().partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise UsageError(f"--dst {text!r}: protocol must be one of {', '.join(PROTOCOLS)}")
    if spec.startswith("["):
        host, sep, port = spec[1:].partition("]:")
    else:
        host, sep, port = spec.rpartition(":")
    if not sep or not host:
        raise UsageError(f"--dst {text!r}: expected IP:PORT[/tcp|udp|sctp]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"--dst {text!r}: {host!r} is not an IP address") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--dst {text!r}: port must be 1-65535")
    return Packet(str(ip), int(port), proto.upper())


def parse_source(text: str | None) -> str | None:
    """An IP as given; None for no source or a name (``node``, a pod) resolved once the capture is read."""
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        if not text.strip() or any(c.isspace() for c in text.strip()):
            raise UsageError(f"--src {text!r} is not an IP address, 'node' or a pod name") from None
        return None


def resolve_source(text: str, facts, family: int) -> str:
    """``--src`` as an IP: ``node`` and pod names looked up in the node facts; UsageError otherwise."""
    from kubectl_proxydoctor.node_facts import resolve_source as resolve

    try:
        return resolve(text, facts, family)
    except ValueError as e:
        raise UsageError(f"--src {e}") from None


@app.command("trace")
def trace_cmd(
    dst: DstOpt,
    src: SrcOpt = None,
    from_path: FromOpt = None,
    sample: SampleOpt = False,
    output: OutputOpt = "table",
    node: NodeOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    image: ImageOpt = None,
) -> None:
    """Simulate one new connection through kube-proxy's rules: the path and every outcome.

    Each rule on the path and why it matched; DNAT destinations with probabilities, or REJECT/DROP.
    """
    from kubectl_proxydoctor.cli.common import offline_state
    from kubectl_proxydoctor.model import Packet
    from kubectl_proxydoctor.tracing import trace_modes, trace_unknown_lines

    check_output(output)
    packet = parse_destination(dst)
    source = parse_source(src)
    if source is not None and (":" in source) != (":" in packet.dst):
        raise UsageError("--src and --dst must be the same IP family")
    snapshot = load_node(from_path, sample, node, kubeconfig=kubeconfig, context=context, image=image)
    state = offline_state(snapshot, [])
    facts = state.facts
    if src is not None and source is None:
        source = resolve_source(src, facts, 6 if ":" in packet.dst else 4)
    packet = Packet(packet.dst, packet.port, packet.protocol, source)
    traced = trace_modes(snapshot, packet)
    results = [r for t in traced for r in t.results]
    failed = [t for t in traced if t.error is not None]
    for t in failed:
        typer.echo(f"kubectl-proxydoctor: {t.error}", err=True)
    available = tuple(t.mode for t in traced)
    unknown = trace_unknown_lines(snapshot, available, {r.mode for r in results}, state.mode)
    unknown += [f"{t.mode} rules could not be traced: {t.error}" for t in failed]
    if output == "json":
        from kubectl_proxydoctor.render.trace_text import trace_json

        typer.echo(json.dumps(trace_json(packet, results, facts, unknown), indent=1))
    else:
        from rich.console import Console

        from kubectl_proxydoctor.render.trace_text import render_traces

        render_traces(packet, results, Console(highlight=False), facts, unknown)
    raise typer.Exit(status_of(unknown=bool(unknown)))
