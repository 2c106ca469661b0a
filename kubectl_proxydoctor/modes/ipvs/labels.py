"""Give IPVS frontends their real service port names from the API objects.

IPVS keeps no names: ``interpret`` names each port after its frontend (``ip:port``,
``nodeport:PORT``). ``relabel(view, cluster)`` maps every frontend to the ``ns/name:port`` whose
ClusterIP, external IP, load-balancer ingress IP or NodePort it is, merging the frontends of one
service port; frontends no Service claims keep their frontend names (leftovers).
"""

from __future__ import annotations

import copy
import ipaddress

from kubectl_proxydoctor.model import Frontend, FrontendKind, ProgrammedPort, ProgrammedView, ServicePortName

FrontendKey = tuple[str | None, str, int]  # (ip or None for a NodePort, PROTOCOL, port)


def _ip(text: object) -> str | None:
    try:
        return str(ipaddress.ip_address(str(text)))
    except ValueError:
        return None


def frontend_index(cluster) -> dict[FrontendKey, tuple[ServicePortName, FrontendKind]]:
    """Every frontend the Services ask for -> (service port name, kind)."""
    index: dict[FrontendKey, tuple[ServicePortName, FrontendKind]] = {}
    for svc in cluster.services:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        for port in spec.get("ports") or []:
            proto = str(port.get("protocol") or "TCP").upper()
            name = ServicePortName(str(meta.get("namespace", "")), str(meta.get("name", "")),
                                   str(port.get("name") or ""), proto)
            number = port.get("port")
            if not isinstance(number, int):
                continue
            for kind, addresses in (("cluster-ip", ips), ("external-ip", spec.get("externalIPs") or []),
                                    ("load-balancer", [i.get("ip") for i in ingress if isinstance(i, dict)])):
                for address in addresses:
                    ip = _ip(address)
                    if ip is not None:
                        index.setdefault((ip, proto, number), (name, kind))  # type: ignore[arg-type]
            if isinstance(port.get("nodePort"), int):
                index.setdefault((None, proto, port["nodePort"]), (name, "node-port"))
    return index


def name_for(frontend: Frontend, index: dict[FrontendKey, tuple[ServicePortName, FrontendKind]]):
    """(name, kind) the API gives this frontend, or None when no Service claims it."""
    key: FrontendKey = (None if frontend.kind == "node-port" else _ip(frontend.ip),
                        frontend.protocol.upper(), frontend.port)
    found = index.get(key)
    if found is None and frontend.kind != "node-port":
        found = index.get((_ip(frontend.ip), frontend.protocol.upper(), frontend.port))
    return found


def relabel(view: ProgrammedView, cluster) -> ProgrammedView:
    """A copy of an IPVS view whose ports carry the API's names (cluster: ClusterState)."""
    index = frontend_index(cluster)
    out = ProgrammedView(mode=view.mode, source=view.source, raw=view.raw)
    for port in view.ports.values():
        for frontend in port.frontends:
            found = name_for(frontend, index)
            frontend = copy.copy(frontend)
            name = port.name
            if found is not None:
                name, kind = found
                if frontend.kind != "node-port":
                    frontend.kind = kind
            target = out.add(ProgrammedPort(name, port.family))
            target.frontends.append(frontend)
            target.evidence.extend(frontend.evidence[:1])
    return out
