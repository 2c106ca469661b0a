"""kube-proxy's iptables chain names, recomputed exactly as pkg/proxy/iptables/proxier.go does.

``portProtoHash``: the first 16 characters of base32(sha256(servicePortName + protocol)), where
servicePortName is ``ns/name:port`` (``ns/name`` for an unnamed port) and protocol is lower case;
KUBE-SEP-* hashes also append the endpoint ``ip:port`` (``[ip]:port`` for IPv6).
"""

from __future__ import annotations

import base64
import hashlib

CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")


def port_name_string(namespace: str, name: str, port: str) -> str:
    """kube-proxy's ServicePortName.String(): ``ns/name:port``, or ``ns/name`` when unnamed."""
    return f"{namespace}/{name}:{port}" if port else f"{namespace}/{name}"


def port_proto_hash(port_name: str, protocol: str) -> str:
    """The 16-character hash shared by KUBE-SVC/SVL/EXT/FW chains of one service port."""
    digest = hashlib.sha256((port_name + protocol.lower()).encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def service_chain(port_name: str, protocol: str, prefix: str = "KUBE-SVC-") -> str:
    """KUBE-SVC-/KUBE-SVL-/KUBE-EXT-/KUBE-FW- chain name of a service port."""
    return prefix + port_proto_hash(port_name, protocol)


def endpoint_string(ip: str, port: int) -> str:
    """Go's net.JoinHostPort: IPv6 addresses in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def endpoint_chain(port_name: str, protocol: str, ip: str, port: int) -> str:
    """KUBE-SEP- chain name of one endpoint of a service port."""
    data = port_name + protocol.lower() + endpoint_string(ip, port)
    digest = hashlib.sha256(data.encode()).digest()
    return "KUBE-SEP-" + base64.b32encode(digest).decode()[:16]
