"""kube-proxy's process as captured: whether it runs and its command line (flags, --config path).

``kube-proxy-cmdline.txt`` holds one line per process named kube-proxy (its /proc/PID/cmdline, the
arguments joined by spaces); an empty file means no such process ran; a missing file means it was
not captured. Old test captures carried the same facts in meta.json (``kube_proxy_running``,
``kube_proxy_cmdline``); those are read when the file is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubectl_proxydoctor.snapshot import NodeSnapshot

FILENAME = "kube-proxy-cmdline.txt"
LOG_FILENAME = "kube-proxy.log"
MAX_LOG_BYTES = 256 * 1024  # the tail of kube-proxy's log that a capture keeps


@dataclass
class KubeProxyProcess:
    """Whether kube-proxy runs on the node (None: unknown) and its command lines."""

    running: bool | None
    cmdlines: list[str] = field(default_factory=list)
    evidence: str = ""

    @property
    def cmdline(self) -> str | None:
        return self.cmdlines[0] if self.cmdlines else None


def kube_proxy_process(snapshot: NodeSnapshot) -> KubeProxyProcess:
    """What the capture says of kube-proxy's process (kube-proxy-cmdline.txt, else old meta.json)."""
    text = snapshot.text(FILENAME)
    if text is not None:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return KubeProxyProcess(True, lines, f"{FILENAME}: {lines[0][:200]}")
        how = snapshot.sources.get(FILENAME, "ok")
        detail = how[how.find("(") + 1:-1] if how.startswith("ok (") else "no process named kube-proxy"
        return KubeProxyProcess(False, [], f"{FILENAME}: empty ({detail})")
    running = snapshot.meta.get("kube_proxy_running")
    cmdline = snapshot.meta.get("kube_proxy_cmdline")
    if isinstance(running, bool) or cmdline:
        cmdlines = [str(cmdline)] if cmdline else []
        if running is None:
            running = True if cmdlines else None
        return KubeProxyProcess(running, cmdlines, f"meta.json: kube_proxy_running {str(running).lower()}")
    return KubeProxyProcess(None, [], f"{FILENAME} not captured")


def tail_bytes(data: bytes, limit: int = MAX_LOG_BYTES) -> bytes:
    """The last ``limit`` bytes of a log (what `tail -c LIMIT` prints)."""
    return data[-limit:] if len(data) > limit else data
