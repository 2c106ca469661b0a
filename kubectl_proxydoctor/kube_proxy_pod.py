"""Commands that reach the kube-proxy pod of one node, with the real node and pod names.

The pod comes from the API's Pods when they were read (kube-system, ``k8s-app=kube-proxy`` or a
``kube-proxy-`` name, ``spec.nodeName`` = the node); otherwise the commands select it with
``--field-selector spec.nodeName=NODE``, which works as written. Fix texts are shown, never run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NAMESPACE = "kube-system"


def find_pod(cluster: Any, node: str | None) -> str | None:
    """The name of the kube-proxy pod the API lists on ``node`` (None when unknown or not read)."""
    if cluster is None or node is None:
        return None
    for pod in getattr(cluster, "pods", None) or []:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        if meta.get("namespace") != NAMESPACE or (pod.get("spec") or {}).get("nodeName") != node:
            continue
        if labels.get("k8s-app") == "kube-proxy" or str(meta.get("name", "")).startswith("kube-proxy-"):
            return str(meta["name"])
    return None


@dataclass(frozen=True)
class KubeProxyPod:
    """How to name this node's kube-proxy pod in a command."""

    node: str | None
    pod: str | None = None

    @classmethod
    def of(cls, cluster: Any, node: str | None) -> KubeProxyPod:
        return cls(node, find_pod(cluster, node))

    @property
    def node_name(self) -> str:
        return self.node or "$(hostname)"  # unknown node: the usual node name, run on the node

    @property
    def select(self) -> str:
        """A command printing ``pod/NAME`` of the kube-proxy pod on this node."""
        return (f"kubectl -n {NAMESPACE} get pods -l k8s-app=kube-proxy "
                f"--field-selector spec.nodeName={self.node_name} -o name")

    @property
    def ref(self) -> str:
        """The pod as a kubectl argument: its name, or the selecting command substituted."""
        return f"pod/{self.pod}" if self.pod else f"$({self.select})"

    @property
    def show(self) -> str:
        return (f"kubectl -n {NAMESPACE} get pods -o wide -l k8s-app=kube-proxy "
                f"--field-selector spec.nodeName={self.node_name}")

    @property
    def logs(self) -> str:
        return f"kubectl -n {NAMESPACE} logs {self.ref}"

    @property
    def restart(self) -> str:
        return f"kubectl -n {NAMESPACE} delete {self.ref}"


def for_context(ctx: Any) -> KubeProxyPod:
    """The kube-proxy pod of the node a CheckContext is about."""
    node = ctx.node or ctx.snapshot.node
    return KubeProxyPod.of(ctx.cluster, node)
