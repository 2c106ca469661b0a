"""Where serve reads the node and the API from, each time it checks.

``CaptureDir``: a capture directory re-read only when one of its files changed (name, size, mtime,
inode); the API then comes from its api.json unless an API source is given. ``LiveNode``: this host
(or, for tests, a named network namespace), collected read-only like `collect`. ``PolledApi``: the
API read whole at every check (``read_cluster``); ``apiwatch.WatchedApi`` keeps it current instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.errors import BundleError
from kubectl_proxydoctor.snapshot import NodeSnapshot


class NodeSource(Protocol):
    name: str
    last_read_stable: bool  # the rules could not change during the last read
    def changed(self) -> bool:
        """True when a re-read may show something new."""
        ...

    def read(self) -> NodeSnapshot:
        """The node now; raises ProxyDoctorError when it cannot be read."""
        ...


class ApiSource(Protocol):
    def current(self) -> tuple[ClusterState, int]:
        """The API objects now, and the sequence number of the last change they include."""
        ...


Fingerprint = tuple[tuple[str, int, int, int], ...]


def fingerprint(path: Path) -> Fingerprint:
    """(name, size, mtime_ns, inode) of every regular file in a directory (or of the file)."""
    try:
        entries = [path] if path.is_file() else sorted(path.iterdir())
        out = []
        for entry in entries:
            st = entry.stat()
            if entry.is_file():
                out.append((entry.name, st.st_size, st.st_mtime_ns, st.st_ino))
        return tuple(out)
    except OSError as e:
        raise BundleError(f"{path}: {e.strerror or e}") from e


@dataclass
class CaptureDir:
    """A capture directory (or bundle) re-read whenever its files change."""

    path: Path
    name: str = "capture"
    last_read_stable: bool = False
    _seen: Fingerprint | None = None

    def changed(self) -> bool:
        try:
            return fingerprint(self.path) != self._seen
        except BundleError:
            return True  # let read() report it

    def read(self) -> NodeSnapshot:
        before = fingerprint(self.path)
        snapshot = NodeSnapshot.load(self.path)
        self.last_read_stable = fingerprint(self.path) == before  # not rewritten while we read it
        if self.last_read_stable:
            self._seen = before
        return snapshot

    def cluster(self, snapshot: NodeSnapshot) -> ClusterState | None:
        """The capture's own api.json (decoded once per snapshot: cluster.of_capture), or None when
        it has none."""
        from kubectl_proxydoctor.cluster import of_capture

        return of_capture(snapshot)


def generation_covers(snapshot: NodeSnapshot) -> bool:
    """True when every kube-proxy rule of the node lives in nf_tables (nftables mode, or iptables on
    the nf_tables backend), so the ruleset generation ID changes whenever they do. IPVS virtual
    servers and legacy-backend rules change nothing there."""
    for name in ("iptables-legacy-save.txt", "ip6tables-legacy-save.txt"):
        if ":KUBE-" in (snapshot.text(name) or ""):
            return False
    for name in ("ipvsadm.txt", "proc-net-ip_vs.txt"):
        lines = (snapshot.text(name) or "").splitlines()
        if any(line.startswith(("TCP ", "UDP ", "SCTP ")) for line in lines):
            return False
    return True


@dataclass
class LiveNode:
    """This node (or network namespace ``netns``), read-only, like `collect`. When the node's rules
    all live in nf_tables, ``changed()`` compares the ruleset generation ID (one netlink request)
    with the one the last read saw, so unchanged rules are not read again."""

    netns: str | None = None
    node_name: str | None = None
    name: str = "node"
    last_read_stable: bool = False  # the generation did not move during the last read
    _gen: object = None
    _seen: int | None = None
    _covers: bool = False

    def _generation(self) -> int | None:
        from kubectl_proxydoctor.serve.nftgen import NftGeneration

        if self._gen is None:
            self._gen = NftGeneration(self.netns)
        return self._gen.read()  # type: ignore[attr-defined]

    def changed(self) -> bool:
        if not self._covers or self._seen is None:
            return True
        gen = self._generation()
        return gen is None or gen != self._seen

    def read(self) -> NodeSnapshot:
        from kubectl_proxydoctor.collect.node import collect_node

        before = self._generation()
        snapshot = collect_node(netns=self.netns, node_name=self.node_name)
        after = self._generation()
        self.last_read_stable = before is not None and before == after
        self._seen = after if self.last_read_stable else None
        self._covers = generation_covers(snapshot)
        return snapshot


@dataclass
class PolledApi:
    """The API read whole at every check (when watching is off)."""

    kubeconfig: str | None
    context: str | None
    node_name: str | None
    seq: int = 0

    def current(self) -> tuple[ClusterState, int]:
        from kubectl_proxydoctor.collect.api import read_cluster

        self.seq += 1
        return read_cluster(self.kubeconfig, self.context, None, self.node_name), self.seq


def node_name_default(given: str | None) -> str | None:
    """--node-name, else $NODE_NAME (the DaemonSet sets it from spec.nodeName)."""
    return given or os.environ.get("NODE_NAME") or None
