"""The collector pod: pinned to one node, host network, only the capabilities reading needs."""

from __future__ import annotations

import re
import uuid
from typing import Any

# a public image that already has iptables (nft and legacy), nft, ipvsadm, ipset and conntrack
DEFAULT_IMAGE = "nicolaka/netshoot:v0.13"
DEFAULT_NAMESPACE = "kube-system"
APP_LABEL = "app.kubernetes.io/name"
APP_NAME = "kubectl-proxydoctor"
NODE_LABEL = "proxydoctor.kubectl.io/node"
RUN_LABEL = "proxydoctor.kubectl.io/run"
DEFAULT_DEADLINE_SECONDS = 300


def pod_name(node: str) -> str:
    """A unique, valid pod name for a collector on ``node``."""
    base = re.sub(r"[^a-z0-9-]", "-", node.lower()).strip("-")[:40] or "node"
    return f"proxydoctor-{base}-{uuid.uuid4().hex[:6]}"


def label_value(text: str) -> str:
    """``text`` made into a valid label value (63 chars, alphanumerics, '-', '_', '.')."""
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.")
    return value or "x"


def collector_pod(node: str, *, image: str = DEFAULT_IMAGE, namespace: str = DEFAULT_NAMESPACE,
                  deadline_seconds: int = DEFAULT_DEADLINE_SECONDS, run_id: str | None = None) -> dict:
    """The Pod manifest of a collector on ``node`` (a plain dict, as the API takes it)."""
    name = pod_name(node)
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                APP_LABEL: APP_NAME,
                NODE_LABEL: label_value(node),
                RUN_LABEL: label_value(run_id or uuid.uuid4().hex[:12]),
            },
            "annotations": {"proxydoctor.kubectl.io/purpose": "read-only capture of kube-proxy state"},
        },
        "spec": {
            "nodeName": node,
            "hostNetwork": True,
            "hostPID": False,
            "dnsPolicy": "ClusterFirstWithHostNet",
            "restartPolicy": "Never",
            "activeDeadlineSeconds": deadline_seconds,
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": "collector",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                # wait for the exec; the deadline ends the pod even if we are killed
                "command": ["sleep", str(deadline_seconds)],
                "securityContext": {
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                    "runAsUser": 0,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                              "limits": {"memory": "512Mi"}},
            }],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
        },
    }
    if namespace == "kube-system":  # a busy node must not evict the collector first
        pod["spec"]["priorityClassName"] = "system-node-critical"
    return pod


def selector_for(node: str | None = None) -> str:
    """The label selector of collector pods (of one node, or all)."""
    selector = f"{APP_LABEL}={APP_NAME}"
    return f"{selector},{NODE_LABEL}={label_value(node)}" if node else selector
