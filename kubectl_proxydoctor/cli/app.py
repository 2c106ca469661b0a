"""The typer application every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="kubectl-proxydoctor",
    help=(
        "Did kube-proxy program what the API says it should? Reads a node's iptables, nftables and "
        "IPVS state (live, or from a capture with --from) and explains every difference.\n\n"
        "Exit codes: 0 healthy, 1 drift found, 2 usage error, 3 could not read what was asked."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich's help formatter imports ~80 ms of modules (markdown, pygments)
    context_settings={"help_option_names": ["-h", "--help"]},
)
