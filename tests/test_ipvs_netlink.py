"""pyroute2 IPVS messages (encoded with pyroute2's own classes) -> the same table as ipvsadm text."""

import socket
import struct

import pytest

pytest.importorskip("pyroute2")

from pyroute2.ipvs import IPVSDest, IPVSService  # noqa: E402
from pyroute2.netlink.generic.ipvs import ipvsmsg  # noqa: E402

from kubectl_proxydoctor.collect.ipvs_netlink import table_from_messages  # noqa: E402
from kubectl_proxydoctor.errors import ParseError  # noqa: E402
from kubectl_proxydoctor.formats import ipvsadm  # noqa: E402


def _roundtrip(cmd: int, attr: str, obj) -> ipvsmsg:
    """Encode like the kernel's reply would be framed, then decode as the live reader receives it."""
    msg = ipvsmsg()
    msg["cmd"] = cmd
    msg["version"] = 1
    msg["attrs"] = [(attr, obj.dump_nla())]
    msg.encode()
    back = ipvsmsg(msg.data)
    back.decode()
    return back


def _svc(**kw):
    return _roundtrip(4, "IPVS_CMD_ATTR_SERVICE", IPVSService(**kw))


def _dest(**kw):
    return _roundtrip(8, "IPVS_CMD_ATTR_DEST", IPVSDest(**kw))


def test_messages_to_table():
    tcp = socket.IPPROTO_TCP
    dump = [
        (_svc(addr="10.96.100.13", port=80, protocol=tcp, sched_name="rr", timeout=600,
              flags={"flags": 0x1 | 0x2, "mask": 0xFFFFFFFF}),
         [_dest(addr="10.244.0.11", port=8080, weight=1, fwd_method=0, active_conns=2, inact_conns=5),
          _dest(addr="10.244.0.13", port=8080, weight=0, fwd_method=0)]),
        (_svc(addr="fd00::10", port=53, protocol=socket.IPPROTO_UDP, sched_name="wrr",
              flags={"flags": 0x2, "mask": 0xFFFFFFFF}),
         [_dest(addr="fd00::1:5", port=5353, weight=3, fwd_method=0)]),
    ]
    table = table_from_messages(dump)
    affinity, dns = table.services
    assert (affinity.protocol, affinity.ip, affinity.port, affinity.scheduler, affinity.persistent) == (
        "TCP", "10.96.100.13", 80, "rr", 600)
    assert [(r.ip, r.port, r.weight, r.forward, r.active, r.inactive) for r in affinity.reals] == [
        ("10.244.0.11", 8080, 1, "Masq", 2, 5), ("10.244.0.13", 8080, 0, "Masq", 0, 0)]
    assert (dns.protocol, dns.ip, dns.family, dns.persistent, dns.reals[0].ip, dns.reals[0].weight) == (
        "UDP", "fd00::10", 6, None, "fd00::1:5", 3)
    # rendered as `ipvsadm -Ln` and read back: the same table
    again = ipvsadm.parse(ipvsadm.render_list(table))
    assert [(v.ip, v.port, v.persistent, [(r.ip, r.weight) for r in v.reals]) for v in again.services] == [
        ("10.96.100.13", 80, 600, [("10.244.0.11", 1), ("10.244.0.13", 0)]),
        ("fd00::10", 53, None, [("fd00::1:5", 3)])]
    assert affinity.evidence == "TCP  10.96.100.13:80 rr persistent 600"


def _nla(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def test_kernel_layout_sixteen_byte_ipv4_address():
    # the kernel puts the whole union nf_inet_addr (16 bytes) in IPVS_SVC_ATTR_ADDR
    svc = (_nla(1, struct.pack("H", socket.AF_INET)) + _nla(2, struct.pack("H", 6))
           + _nla(3, socket.inet_aton("10.96.0.1") + b"\0" * 12) + _nla(4, struct.pack(">H", 443))
           + _nla(6, b"rr\0") + _nla(7, struct.pack("II", 2, 0xFFFFFFFF)) + _nla(8, struct.pack("I", 0)))
    body = _nla(1 | 0x8000, svc)
    data = struct.pack("IHHII", 20 + len(body), 0x20, 2, 1, 0) + struct.pack("BBH", 4, 1, 0) + body
    msg = ipvsmsg(data)
    msg.decode()
    (vs,) = table_from_messages([(msg, [])]).services
    assert (vs.ip, vs.port, vs.protocol, vs.scheduler, vs.persistent) == ("10.96.0.1", 443, "TCP", "rr", None)


def test_service_without_address_is_a_parse_error():
    msg = ipvsmsg()
    msg["cmd"] = 4
    msg["version"] = 1
    msg["attrs"] = [("IPVS_CMD_ATTR_SERVICE", {"attrs": [("IPVS_SVC_ATTR_AF", 2),
                                                         ("IPVS_SVC_ATTR_SCHED_NAME", "rr")]})]
    msg.encode()
    back = ipvsmsg(msg.data)
    back.decode()
    with pytest.raises(ParseError, match="netlink IPVS: service without"):
        table_from_messages([(back, [])])


def test_destination_dump_request_carries_the_service_key():
    from kubectl_proxydoctor.collect.ipvs_netlink import _service_key
    from kubectl_proxydoctor.formats.ipvs_table import VirtualServer

    for vs, want in (
        (VirtualServer("UDP", "fd00::10", 53, "rr", family=6),
         {"IPVS_SVC_ATTR_AF": 10, "IPVS_SVC_ATTR_PROTOCOL": 17, "IPVS_SVC_ATTR_ADDR": "fd00::10",
          "IPVS_SVC_ATTR_PORT": 53}),
        (VirtualServer("FWM", None, 0, "rr", fwmark=7), {"IPVS_SVC_ATTR_AF": 2, "IPVS_SVC_ATTR_FWMARK": 7}),
    ):
        msg = ipvsmsg()
        msg["cmd"] = 8
        msg["version"] = 1
        msg["attrs"] = [("IPVS_CMD_ATTR_SERVICE", _service_key(vs).dump_key())]
        msg.encode()
        back = ipvsmsg(msg.data)
        back.decode()
        attrs = dict(back.get_attr("IPVS_CMD_ATTR_SERVICE")["attrs"])
        assert attrs == want
