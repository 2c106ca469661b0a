"""Was each source of a capture read? One typed decision, used by every command.

A capture file is either there (read), or missing with a reason in meta.json ``sources`` (the
collector could not read it, or there was nothing to read), or missing without one (not
captured). ``source_state`` turns that into a ``SourceState``; ``rules_state`` says whether a proxy
mode's rules are known. Unknown is never empty: rules that could not be read or were not captured
are not compared with anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from kubectl_proxydoctor.snapshot import NodeSnapshot


class Readability(StrEnum):
    OK = "ok"  # the file is in the capture
    ABSENT = "absent"  # read, and there is nothing (kernel without IP_VS, nothing listening)
    UNREADABLE = "unreadable"  # the collector tried and failed (privilege, tool missing, error)
    NOT_CAPTURED = "not-captured"  # no file and no reason: nobody read it


class Why(StrEnum):
    """Why a source could not be read, as the fix depends on it."""

    NEEDS_ROOT = "needs root"
    TOOL_MISSING = "binary missing"
    FAILED = "read failed"
    NOT_CAPTURED = "file not captured"


@dataclass(frozen=True)
class SourceState:
    """One capture file: whether it was read, and why not."""

    file: str
    state: Readability
    reason: str = ""  # the collector's words
    why: Why | None = None  # for UNREADABLE / NOT_CAPTURED

    @property
    def known(self) -> bool:
        """True when what the file says (or its absence) can be compared with anything."""
        return self.state in (Readability.OK, Readability.ABSENT)

    def describe(self) -> str:
        if self.state is Readability.NOT_CAPTURED:
            return f"{self.file}: not captured (no such file in the capture)"
        if self.state is Readability.UNREADABLE:
            reason = self.reason if self.reason.startswith(str(self.why)) else f"{self.why}: {self.reason}"
            return f"{self.file}: could not be read ({reason})"
        return f"{self.file}: {self.reason or self.state.value}"


# meta.json "sources" keys other than the file name (collect-node.sh and collect's short names)
ALIASES: dict[str, tuple[str, ...]] = {
    "iptables-save.txt": ("iptables",),
    "iptables-nft-save.txt": ("iptables-nft",),
    "iptables-legacy-save.txt": ("iptables-legacy",),
    "ip6tables-save.txt": ("ip6tables",),
    "ip6tables-nft-save.txt": ("ip6tables-nft",),
    "ip6tables-legacy-save.txt": ("ip6tables-legacy",),
    "ip_tables_names.txt": ("ip_tables_names",),
    "ip6_tables_names.txt": ("ip6_tables_names",),
    "nft-ruleset.json": ("nftables",),
    "nft-ruleset.txt": ("nftables-text",),
    "ipvsadm.txt": ("ipvs",),
    "proc-net-ip_vs.txt": ("proc-net-ip_vs", "ipvs-proc", "ipvs"),
    "ipset-save.txt": ("ipset",),
    "ip-addr.json": ("addresses",),
    "kernel.txt": ("kernel",),
    "kernel-config.txt": ("kernel-config",),
    "modules.txt": ("modules",),
    "sysctl.txt": ("sysctl",),
    "kube-proxy-metrics.txt": ("kube-proxy-metrics",),
    "kube-proxy-mode.txt": ("kube-proxy-mode",),
    "kube-proxy-healthz.json": ("kube-proxy-healthz",),
    "kube-proxy-statusz.txt": ("kube-proxy-statusz",),
    "kube-proxy-cmdline.txt": ("kube-proxy-process",),
    "kube-proxy.log": ("kube-proxy-log",),
    "conntrack.txt": ("conntrack",),
}

# the capture files holding each proxy mode's rules (IPv4 first)
RULE_FILES: dict[str, tuple[str, ...]] = {
    "iptables": ("iptables-save.txt", "iptables-nft-save.txt", "iptables-legacy-save.txt",
                 "ip6tables-save.txt", "ip6tables-nft-save.txt", "ip6tables-legacy-save.txt"),
    "nftables": ("nft-ruleset.json",),
    "ipvs": ("ipvsadm.txt", "proc-net-ip_vs.txt"),
}

# reasons that mean "read, and nothing there" rather than "could not read"
# ("not visible": a collector without the host PID namespace cannot see kube-proxy's process; that
# leaves the process unknown, which is not a failure to read the rules or kube-proxy's endpoints)
_ABSENT = re.compile(r"kernel has no|module not loaded|not loaded|does not exist|nothing listens|not served"
                     r"|processes not visible|is embedded in"
                     r"|connection refused|no such process|not running"
                     r"|address family not supported|protocol not supported", re.I)  # e.g. no IPv6
_ROOT = re.compile(r"needs root|must be root|permission denied|not permitted|EACCES|EPERM"
                   r"|not readable", re.I)
_TOOL = re.compile(r"\bnot found\b|command not found|no such file or directory", re.I)


def classify(reason: str) -> tuple[Readability, Why | None]:
    """The one place a collector's free-text reason is read: ok, absent, or unreadable and why."""
    text = reason.strip()
    if text.startswith("ok"):
        return Readability.OK, None
    if _ROOT.search(text):
        return Readability.UNREADABLE, Why.NEEDS_ROOT
    if _ABSENT.search(text):
        return Readability.ABSENT, None
    if _TOOL.search(text):
        return Readability.UNREADABLE, Why.TOOL_MISSING
    return Readability.UNREADABLE, Why.FAILED


def encode_state(state: Readability, why: Why | None = None) -> str:
    """How a typed readability is recorded in meta.json ``source_states``: "absent",
    "unreadable/needs root", ..."""
    return f"{state.value}/{why.value}" if why is not None else state.value


# what a collector records for a source it could not read: exactly encode_state's outputs
_RECORDED: dict[str, tuple[Readability, Why | None]] = {
    encode_state(Readability.ABSENT): (Readability.ABSENT, None),
    **{encode_state(Readability.UNREADABLE, why): (Readability.UNREADABLE, why)
       for why in (Why.NEEDS_ROOT, Why.TOOL_MISSING, Why.FAILED)},
}


def decode_state(text: str) -> tuple[Readability, Why | None] | None:
    """``encode_state``'s text back; None when it is not one a collector records for an unavailable
    source (e.g. "ok", "unreadable" without a why, another tool's words): then the reason text is
    classified, so a stray value never makes an unread source "ok" or a why "None"."""
    return _RECORDED.get(text)


def _reason(snapshot: NodeSnapshot, file: str) -> tuple[str, tuple[Readability, Why | None]] | None:
    """The reason recorded for ``file`` and its typed state: the one the collector recorded, else
    (a hand-made or older capture) ``classify`` of the text, the one fallback."""
    for key in (file, *ALIASES.get(file, ())):
        if key in snapshot.sources:
            reason, recorded = snapshot.sources[key], snapshot.states.get(key)
            typed = decode_state(recorded) if recorded and not reason.startswith("ok") else None
            return reason, typed or classify(reason)
    return None


def _strip(reason: str) -> str:
    return reason.split(":", 1)[1].strip() if reason.startswith("unavailable:") else reason


def read_failures(snapshot: NodeSnapshot) -> dict[str, str]:
    """The sources the collector tried and could not read (privilege, tool, error), by the typed
    state it recorded, else by ``classify``; "nothing there" is not a failure."""
    out: dict[str, str] = {}
    for key, reason in snapshot.sources.items():
        if reason.startswith("ok"):
            continue
        recorded = snapshot.states.get(key)
        typed = decode_state(recorded) if recorded else None
        if (typed or classify(reason))[0] is Readability.UNREADABLE:
            out[key] = reason
    return out


def source_state(snapshot: NodeSnapshot, file: str) -> SourceState:
    """Whether ``file`` was read, from the capture and meta.json's ``sources``."""
    if snapshot.has(file):
        reason = snapshot.sources.get(file, "ok")
        return SourceState(file, Readability.OK, reason if reason.startswith("ok") else "ok")
    found = _reason(snapshot, file)
    if found is None:
        return SourceState(file, Readability.NOT_CAPTURED, why=Why.NOT_CAPTURED)
    reason, (state, why) = found
    if state is Readability.OK:  # said ok, but no file: nothing to compare with
        return SourceState(file, Readability.NOT_CAPTURED, reason, Why.NOT_CAPTURED)
    return SourceState(file, state, _strip(reason), why)


@dataclass(frozen=True)
class RulesState:
    """Whether one proxy mode's rules are known on this node."""

    mode: str
    files: tuple[SourceState, ...]

    @property
    def unreadable(self) -> list[SourceState]:
        return [s for s in self.files if s.state is Readability.UNREADABLE]

    @property
    def captured(self) -> bool:
        return any(s.state is not Readability.NOT_CAPTURED for s in self.files)

    @property
    def known(self) -> bool:
        """Read (or known to be absent) and no rule file of the mode failed to read."""
        return self.captured and not self.unreadable

    def problems(self) -> list[SourceState]:
        """What makes the rules unknown: the files that failed, or every file when none was captured."""
        if self.unreadable:
            return self.unreadable
        return [] if self.captured else list(self.files)

    def describe(self) -> str:
        if self.known:
            return f"{self.mode} rules read"
        if self.unreadable:
            return f"{self.mode} rules could not be read: " + "; ".join(s.describe() for s in self.unreadable)
        return f"{self.mode} rules were not captured (no {', '.join(s.file for s in self.files[:3])})"

    def summary(self) -> str:
        """One short line: "iptables rules could not be read (needs root)"."""
        if self.known:
            return f"{self.mode} rules read"
        if self.unreadable:
            return f"{self.mode} rules could not be read ({self.why})"
        return f"{self.mode} rules were not captured"

    @property
    def why(self) -> Why:
        whys = [s.why for s in self.problems() if s.why is not None]
        return whys[0] if whys else Why.NOT_CAPTURED


def _backend_covered(snapshot: NodeSnapshot, file: str) -> bool:
    """Whether another source read covers the iptables backend dumped by ``file``: the default dump
    (``iptables-save``) when its header names that backend ("(nf_tables)" / "(legacy)"), or, for the
    legacy backend, an empty ip_tables_names.txt (no legacy table exists)."""
    family = "ip6" if file.startswith("ip6") else "ip"
    backend = "nf_tables" if "-nft-" in file else "legacy" if "-legacy-" in file else None
    if backend is None:
        return False
    default = snapshot.text(f"{family}tables-save.txt") or ""
    if default.startswith("#") and f"({backend})" in default.split("\n", 1)[0]:
        return True
    if backend == "legacy":
        names = snapshot.text("ip_tables_names.txt" if family == "ip" else "ip6_tables_names.txt")
        return names is not None and not names.strip()
    return False


def rules_state(snapshot: NodeSnapshot, mode: str) -> RulesState:
    """Whether ``mode``'s rules are known. For iptables, one IPv4 dump read stands for the backends
    not captured, and for a backend whose save tool is missing when another source covers it (the
    default dump of that backend, or no legacy table at all); IPv6 dumps count when captured or
    tried (a kernel without IPv6 is "absent"). For IPVS, either ipvsadm's listing or /proc/net/ip_vs
    read is enough."""
    files = RULE_FILES[mode]
    states = tuple(source_state(snapshot, f) for f in files)
    if mode == "iptables":
        v4 = states[:3]
        v6 = tuple(s for s in states[3:] if s.state is not Readability.NOT_CAPTURED)
        states = (*v4, *v6)
        if any(s.state is Readability.OK for s in v4):  # one backend's dump stands for "iptables"
            states = tuple(s for s in states if s.state is not Readability.NOT_CAPTURED and not (
                s.why is Why.TOOL_MISSING and _backend_covered(snapshot, s.file)))
    elif mode == "ipvs" and any(s.state is Readability.OK for s in states):
        states = tuple(s for s in states if s.state is Readability.OK)  # the other is a fallback
    return RulesState(mode, states)


def unknown_rules(snapshot: NodeSnapshot, modes: tuple[str, ...]) -> list[RulesState]:
    """The modes among ``modes`` whose rules are not known."""
    return [r for r in (rules_state(snapshot, m) for m in modes) if not r.known]


def has_kube_proxy_rules(snapshot: NodeSnapshot) -> bool:
    """Cheap: does any rule file hold kube-proxy's chains, table or virtual servers?"""
    if any(":KUBE-" in (snapshot.text(f) or "") for f in RULE_FILES["iptables"]):
        return True
    if '"kube-proxy"' in (snapshot.text("nft-ruleset.json") or ""):
        return True
    return bool(re.search(r"^(TCP|UDP|SCTP|FWM)\s", snapshot.text("ipvsadm.txt") or "", re.M))


def unknown_rule_lines(snapshot: NodeSnapshot, modes: tuple[str, ...], found_rules: bool) -> list[str]:
    """Why what was read of the rules may not be the whole story, one line per mode: with no rules
    found, every mode not read or not captured; with rules found, the modes that failed to read."""
    return [f"{r.summary()}: {'; '.join(s.describe() for s in r.problems())}"
            for r in unknown_rules(snapshot, modes) if not found_rules or r.unreadable]
