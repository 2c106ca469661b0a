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


def sample_path() -> Path:
    """The embedded sample capture (a real kube-proxy v1.30 node with a stale endpoint)."""
    return Path(str(resources.files("kubectl_proxydoctor") / "sample"))


def check_output(output: str, allowed: tuple[str, ...] = ("table", "json")) -> str:
    if output not in allowed:
        raise UsageError(f"unknown output format {output!r}; use one of: {', '.join(allowed)}")
    return output


def load_node(from_path: Path | None, sample: bool = False):
    """The node snapshot to work on: a capture, the sample, or the live node (read-only)."""
    from kubectl_proxydoctor.snapshot import NodeSnapshot

    if from_path is not None and sample:
        raise UsageError("--from and --sample exclude each other")
    if sample:
        return NodeSnapshot.load(sample_path())
    if from_path is not None:
        return NodeSnapshot.load(from_path)
    from kubectl_proxydoctor.collect.node import collect_node

    return collect_node()
