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


def name_for(frontend: Frontend, index: dict[FrontendKey, tuple[ServicePortName, FrontendKind]]
             ) -> tuple[ServicePortName, FrontendKind] | None:
    """(name, kind) the API gives this frontend, or None when no Service claims it."""
    key: FrontendKey = (None if frontend.kind == "node-port" else _ip(frontend.ip),
                        frontend.protocol.upper(), frontend.port)
    found = index.get(key)
    if found is None and frontend.kind != "node-port":
        found = index.get((_ip(frontend.ip), frontend.protocol.upper(), frontend.port))
    return found


def traffic_policies(cluster) -> dict[str, tuple[str, str]]:
    """"namespace/name" -> (internal, external) traffic policy, "local" or "cluster"."""
    out: dict[str, tuple[str, str]] = {}
    for svc in cluster.services:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        out[f"{meta.get('namespace', '')}/{meta.get('name', '')}"] = (
            "local" if spec.get("internalTrafficPolicy") == "Local" else "cluster",
            "local" if spec.get("externalTrafficPolicy") in ("Local", "OnlyLocal") else "cluster")
    return out


def relabel(view: ProgrammedView, cluster) -> ProgrammedView:
    """A copy of an IPVS view whose ports carry the API's names (cluster: ClusterState).

    IPVS records no traffic policy for a ClusterIP (kube-proxy just programs only local endpoints
    as real servers): such frontends take the Service's internalTrafficPolicy, so the endpoint
    comparison uses the right set. External frontends keep the policy their -LOCAL ipsets show,
    unless no ipsets were captured."""
    index = frontend_index(cluster)
    policies = traffic_policies(cluster)
    ipsets_known = getattr(view.raw, "ipsets", None) is not None
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
                internal, external = policies.get(name.service, ("cluster", "cluster"))
                if frontend.kind == "cluster-ip" and frontend.policy != internal:
                    frontend.policy = internal  # type: ignore[assignment]
                    frontend.evidence = [*frontend.evidence,
                                         f"policy {internal}: the Service's internalTrafficPolicy "
                                         "(IPVS records none for a ClusterIP)"]
                elif frontend.kind != "cluster-ip" and not ipsets_known and frontend.policy != external:
                    frontend.policy = external  # type: ignore[assignment]
                    frontend.evidence = [*frontend.evidence,
                                         f"policy {external}: the Service's externalTrafficPolicy "
                                         "(no ipset-save.txt to read it from)"]
            target = out.add(ProgrammedPort(name, port.family))
            target.frontends.append(frontend)
            target.evidence.extend(frontend.evidence[:1])
    return out
