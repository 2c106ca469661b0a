"""Commands that remove what IPVS mode left for a frontend no Service claims any more.

Each command is given only when the capture shows its object exists: the virtual server
(``ipvsadm -D``), its address on kube-ipvs0 (unless another virtual server that stays uses it) and
its entries in kube-proxy's ipsets. They are shown to the user, never run by proxydoctor.
"""

from __future__ import annotations

from kubectl_proxydoctor.formats.ipvs_table import VirtualServer
from kubectl_proxydoctor.model import Frontend
from kubectl_proxydoctor.modes.ipvs.state import DUMMY_INTERFACE, IpvsState

PROTOCOL_FLAGS = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}


def _virtual_servers(state: IpvsState, frontend: Frontend) -> list[VirtualServer]:
    proto = frontend.protocol.upper()
    if frontend.kind == "node-port" and frontend.ip is None:  # one virtual server per node address
        return [vs for vs in state.table.services
                if vs.protocol == proto and vs.port == frontend.port and vs.ip is not None
                and vs.ip not in (state.ipvs0 or set())]
    found = state.table.find(proto, frontend.ip or "", frontend.port)
    return [found] if found is not None else []


def _ipset_entries(state: IpvsState, vs: VirtualServer, node_port: bool, address_goes: bool) -> list[str]:
    """``ipset del`` of every kube-proxy set entry naming this virtual server (its ip and proto:port,
    or its node port), and of its bare address when the address leaves kube-ipvs0 too."""
    if not state.ipsets or vs.ip is None:
        return []
    port = f"{vs.protocol.lower()}:{vs.port}"
    commands = []
    for name, members in sorted(state.ipsets.items()):
        if not name.startswith("KUBE-") or "LOOP-BACK" in name:
            continue  # loop-back entries name endpoints, not this frontend
        for member in members.members:
            values = dict(member.parts[:2]) if len(member.parts) >= 2 else {}
            if node_port:
                hit = "NODE-PORT" in name and member.parts[:1] in ((("port", str(vs.port)),),
                                                                   (("port", port),))
            elif len(member.parts) == 1:
                hit = address_goes and member.parts[0] == ("ip", vs.ip)
            else:
                hit = values.get("ip") == vs.ip and values.get("port") == port
            if hit:
                commands.append(f"ipset del {name} {member.raw}")
    return commands


def leftover_commands(state: IpvsState, frontends: list[Frontend], leftovers: list[Frontend] | None = None,
                      done: set[str] | None = None) -> list[str]:
    """ipvsadm / ip addr / ipset commands that remove these frontends, in a safe order (the virtual
    server first, so no new connection is balanced while the rest goes).

    ``leftovers``: every frontend no Service claims (default: these); an address leaves kube-ipvs0
    only when no other virtual server keeps using it. ``done``: addresses an earlier command list
    already removes (updated), so each removal is given once."""
    servers = [(vs, fe.kind == "node-port") for fe in frontends for vs in _virtual_servers(state, fe)]
    gone = {id(vs) for fe in (leftovers if leftovers is not None else frontends)
            for vs in _virtual_servers(state, fe)} | {id(vs) for vs, _ in servers}
    staying = {vs.ip for vs in state.table.services if id(vs) not in gone}
    done = set() if done is None else done
    delete = [f"ipvsadm -D {PROTOCOL_FLAGS.get(vs.protocol, '-t')} {vs.address}" for vs, _ in servers]
    addresses = []
    going: set[str] = set()
    for vs, node_port in servers:
        if (node_port or vs.ip is None or vs.ip in staying or vs.ip in done or state.ipvs0 is None
                or vs.ip not in state.ipvs0):
            continue
        going.add(vs.ip)
        command = f"ip addr del {vs.ip}/{128 if ':' in vs.ip else 32} dev {DUMMY_INTERFACE}"
        if command not in addresses:
            addresses.append(command)
    entries = [c for vs, node_port in servers for c in _ipset_entries(state, vs, node_port, vs.ip in going)]
    done |= going
    return list(dict.fromkeys([*delete, *addresses, *entries]))
