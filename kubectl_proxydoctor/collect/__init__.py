"""Read-only collectors: one module per kernel or API source.

Each node collector module exposes ``collect(ctx: CollectContext) -> None``: it stores the text the
stock tool would print under its capture-file name (``ctx.files``) and says, per source, "ok" or
"unavailable: <reason>" (``ctx.sources``). Collectors never write kernel state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubectl_proxydoctor.sources import Readability, Why, classify, encode_state


@dataclass
class CollectContext:
    """Where collectors put what they read, and where they say what they could not read."""

    files: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    netns: str | None = None  # collect inside this named network namespace (tests, debugging)
    meta: dict = field(default_factory=dict)  # extra facts merged into meta.json (e.g. HTTP status)
    # what a collector parsed while reading (key -> (input files, value)): see NodeSnapshot.seed
    seeds: dict[str, tuple[tuple[str, ...], object]] = field(default_factory=dict)
    # whether collectors parse what they read for the seeds (False: only the files are wanted,
    # as by `collect`, which writes them and interprets nothing)
    parse: bool = True

    def ok(self, source: str, filename: str | None = None, text: str | None = None) -> None:
        if filename is not None and text is not None:
            self.files[filename] = text
        self.sources[source] = "ok"
        self.states.pop(source, None)

    # source -> typed readability ("unreadable/needs root", "absent"), decided where it is read
    states: dict[str, str] = field(default_factory=dict)

    def unavailable(self, source: str, reason: str, why: Why | None = None) -> None:
        """``source`` could not be read (``why`` given: the collector knows why; else the one
        classifier, sources.classify, reads ``reason`` now, so the capture records a typed state)."""
        self.sources[source] = f"unavailable: {reason}"
        self.states[source] = encode_state(Readability.UNREADABLE, why) if why else encode_state(
            *classify(reason))
