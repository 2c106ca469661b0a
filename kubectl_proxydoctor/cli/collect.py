"""`kubectl proxydoctor collect -o FILE|DIR`: capture this node (read-only) for offline use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kubectl_proxydoctor.cli.app import app
from kubectl_proxydoctor.cli.common import ContextOpt, ImageOpt, KubeconfigOpt, NodeOpt, collect_remote_node
from kubectl_proxydoctor.errors import ProxyDoctorError, UsageError
from kubectl_proxydoctor.exit_status import status_of


def _check_target(path: Path) -> None:
    if path.name.endswith((".tar.gz", ".tgz")):
        if path.exists():
            raise UsageError(f"{path}: already exists; not overwriting it")
        return
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: exists and is not a directory (name a .tar.gz to write a bundle)")
    if path.is_dir() and any(path.iterdir()):
        raise UsageError(f"{path}: directory is not empty; not overwriting a capture")


@app.command()
def collect(
    output: Annotated[Path, typer.Option("-o", "--output",
                                         help="Write the capture here: a directory, or FILE.tar.gz.")],
    conntrack: Annotated[bool, typer.Option("--conntrack", help="Also capture the conntrack table.")] = False,
    redact: Annotated[bool, typer.Option(
        "--redact", help="Replace IPs and object names consistently and drop Secrets (to share the capture)."
    )] = False,
    node_name: Annotated[str | None, typer.Option("--node-name",
                                                  help="Node name for meta.json (default hostname).")] = None,
    netns: Annotated[str | None, typer.Option("--netns", hidden=True,
                                              help="Collect inside this named network namespace.")] = None,
    node: NodeOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    image: ImageOpt = None,
) -> None:
    """Capture this node's kube-proxy state (read-only) into a directory or .tar.gz bundle."""
    try:
        _check_target(output)
    except OSError as e:
        raise ProxyDoctorError(f"{output}: cannot use as output ({e.strerror or e})") from e
    from kubectl_proxydoctor.collect.node import collect_node
    from kubectl_proxydoctor.sources import read_failures

    if node is not None:
        if netns is not None:
            raise UsageError("--node and --netns exclude each other")
        snapshot = collect_remote_node(node, kubeconfig=kubeconfig, context=context, image=image,
                                       with_conntrack=conntrack)
    else:
        # only the files are written: nothing here interprets what the collectors read
        snapshot = collect_node(netns=netns, with_conntrack=conntrack, node_name=node_name, parse=False)
    if redact:
        from kubectl_proxydoctor.redact import redact_snapshot

        snapshot = redact_snapshot(snapshot)
    try:
        written = snapshot.save(output)
    except OSError as e:
        raise ProxyDoctorError(f"{output}: cannot write the capture ({e.strerror or e})") from e
    unreadable = read_failures(snapshot)
    typer.echo(f"wrote {written} ({len(snapshot.files) + 1} files{', redacted' if redact else ''})")
    for source, reason in sorted(snapshot.unavailable().items()):
        typer.echo(f"  {source}: {reason}", err=True)
    raise typer.Exit(status_of(unknown=bool(unreadable)))
