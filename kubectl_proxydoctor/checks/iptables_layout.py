"""unknown-layout (iptables): rules of kube-proxy's service and frontend chains in a shape no known
kube-proxy generation writes (``modes.iptables.layout``): a warning naming the rule, never drift
(the frontends they reach are left out of the endpoint comparison)."""

from __future__ import annotations

from collections.abc import Iterable

from kubectl_proxydoctor.checks import CheckContext, check
from kubectl_proxydoctor.model import Finding, ProgrammedView, ServicePortName

_FIX = ("Not a rule kube-proxy v1.28 to master writes in iptables mode: a newer kube-proxy layout, or "
        "something else edits kube-proxy's chains. Check the kube-proxy version (`kubectl -n kube-system "
        "get ds kube-proxy -o jsonpath='{.spec.template.spec.containers[0].image}'`); the service port's "
        "endpoints are not compared while its rules are not understood.")


def _port_of(view: ProgrammedView, text: str) -> ServicePortName | None:
    """The service port whose frontend the rule leaves not understood (None: no frontend reaches it)."""
    for (name, _family), port in view.ports.items():
        for fe in port.frontends:
            if fe.unknown_layout and fe.unknown_layout.endswith(text):
                return name
    return None


@check("iptables-layout")
def unknown_layout(ctx: CheckContext) -> Iterable[Finding]:
    """Each iptables rule of kube-proxy's chains that no known generation writes: a warning."""
    if ctx.running_mode() not in (None, "iptables", "unknown"):
        return  # another mode's leftovers are reported as mode-leftover elsewhere
    for view in ctx.views:
        if view.mode != "iptables":
            continue
        prefix = f"[{view.source}] " if "legacy" in view.source else ""
        for rule in view.unknown_layout:
            message = f"{prefix}{rule.message}"
            name = _port_of(view, rule.text)
            if name is not None:
                yield Finding.for_port(name, code="unknown-layout", severity="warning", message=message,
                                       evidence=[rule.text], fix=_FIX, mode="iptables")
            else:
                yield Finding(code="unknown-layout", severity="warning", message=message,
                              evidence=[rule.text], fix=_FIX, mode="iptables")
