"""nftables' table list read straight from the kernel over netlink (read-only), without nft.

``nft list tables`` (nft 1.0.x) first fills nft's whole cache: every chain, rule and set element
of every table, which took longer than the table list is worth on a 10k-service node (issue 19:
a fixed 10 s limit made collect exit 3). One ``NFT_MSG_GETTABLE`` dump returns the table names in
milliseconds whatever the tables hold.

Only ``GET`` requests with ``NLM_F_DUMP`` are ever sent: the kernel answers them without changing
anything (``read_only_request`` refuses any other message type).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from typing import TypeVar

from kubectl_proxydoctor.collect.netns import in_netns as netns_work

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETTABLE, NFT_MSG_GETCHAIN, NFT_MSG_GETRULE, NFT_MSG_GETSET, NFT_MSG_GETSETELEM = 1, 4, 7, 10, 13
NFT_MSG_GETGEN, NFT_MSG_GETOBJ, NFT_MSG_GETFLOWTABLE = 16, 19, 23
# the only requests this module (and nft_nlread) sends
GET_MESSAGES = {NFT_MSG_GETTABLE, NFT_MSG_GETCHAIN, NFT_MSG_GETRULE, NFT_MSG_GETSET, NFT_MSG_GETSETELEM,
                NFT_MSG_GETGEN, NFT_MSG_GETOBJ, NFT_MSG_GETFLOWTABLE}
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFTA_TABLE_NAME = 1
NFPROTO_UNSPEC = 0
FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}
CLONE_NEWNET = 0x40000000
RECV_SIZE = 1 << 16

_HEADER = struct.Struct("=LHHLL")  # nlmsghdr: length, type, flags, seq, pid
_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, resource id (big endian)
_ATTR = struct.Struct("=HH")  # nlattr: length, type

T = TypeVar("T")


class NetlinkError(OSError):
    """The kernel refused or the socket failed (``errno`` says why: EPERM without CAP_NET_ADMIN)."""


def read_only_request(msg_type: int, family: int, seq: int, attributes: bytes = b"") -> bytes:
    """A dump request of one of GET_MESSAGES (anything else is refused: this module only reads),
    with ``attributes`` (see ``attribute``) narrowing it (a table, a chain, a set)."""
    if msg_type not in GET_MESSAGES:
        raise ValueError(f"refusing nftables netlink message {msg_type}: proxydoctor only reads")
    payload = _NFGEN.pack(family, 0, 0) + attributes
    flags = NLM_F_REQUEST if msg_type == NFT_MSG_GETGEN else NLM_F_REQUEST | NLM_F_DUMP
    return _HEADER.pack(_HEADER.size + len(payload), NFNL_SUBSYS_NFTABLES << 8 | msg_type,
                        flags, seq, 0) + payload


def attribute(kind: int, value: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    raw = _ATTR.pack(_ATTR.size + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def open_socket(netns: str | None = None) -> socket.socket:
    """A netfilter netlink socket in ``netns`` (NetlinkError when it cannot be made)."""
    try:
        return in_netns(netns, _open)
    except NetlinkError:
        raise
    except OSError as e:
        raise NetlinkError(e.errno or errno.EIO, f"netlink socket: {e.strerror or e}") from e


def list_tables(netns: str | None = None) -> list[tuple[str, str]]:
    """Every nftables table as (family, name), in the kernel's order (as ``nft list tables``)."""
    tables = []
    for body in _dump(netns, read_only_request(NFT_MSG_GETTABLE, NFPROTO_UNSPEC, 1)):
        family = FAMILIES.get(body[0], str(body[0]))
        name = _attrs(body, _NFGEN.size).get(NFTA_TABLE_NAME)
        if name is not None:
            tables.append((family, name.rstrip(b"\0").decode("utf-8", "replace")))
    return tables


def in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """``fn()`` run in network namespace ``netns`` (``ip netns`` name; None: this one), on a thread
    of its own so this thread's namespace never changes. A socket made there stays there."""
    if netns is None:
        return fn()
    return netns_work(netns, fn, NetlinkError)


def _open() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    return sock


def _dump(netns: str | None, request: bytes) -> list[bytes]:
    """The bodies (after nlmsghdr) of every message a dump request returns."""
    with open_socket(netns) as sock:
        return dump_on(sock, request)


def dump_on(sock: socket.socket, request: bytes) -> list[bytes]:
    """The bodies (after nlmsghdr) of every message ``request`` (a dump) returns on ``sock``."""
    bodies: list[bytes] = []
    sock.send(request)
    while True:
        data = sock.recv(RECV_SIZE)
        if not data:
            raise NetlinkError(errno.EIO, "netlink: the dump ended without NLMSG_DONE")
        off = 0
        while off + _HEADER.size <= len(data):
            length, msg_type, _flags, _seq, _pid = _HEADER.unpack_from(data, off)
            if length < _HEADER.size:
                raise NetlinkError(errno.EIO, "netlink: malformed message")
            if _flags & NLM_F_DUMP_INTR:
                raise NetlinkError(errno.EAGAIN, "nftables changed during the dump")
            if msg_type == NLMSG_DONE:
                return bodies
            if msg_type == NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", data, off + _HEADER.size)
                if code:
                    raise NetlinkError(-code, f"nftables netlink dump: {os.strerror(-code)}")
            else:
                bodies.append(data[off + _HEADER.size:off + length])
            off += (length + 3) & ~3


def generation(sock: socket.socket) -> int:
    """The ruleset's generation id (NFT_MSG_GETGEN): it changes with every committed change."""
    sock.send(read_only_request(NFT_MSG_GETGEN, NFPROTO_UNSPEC, 1))
    data = sock.recv(RECV_SIZE)
    length, msg_type, _flags, _seq, _pid = _HEADER.unpack_from(data, 0)
    if msg_type == NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", data, _HEADER.size)
        raise NetlinkError(-code or errno.EIO, f"nftables generation: {os.strerror(-code)}")
    gen_id = _attrs(data[_HEADER.size:length], _NFGEN.size).get(1)
    if gen_id is None or len(gen_id) != 4:
        raise NetlinkError(errno.EIO, "nftables generation: no id in the answer")
    return int(struct.unpack(">I", gen_id)[0])


def _attrs(body: bytes, off: int) -> dict[int, bytes]:
    """The netlink attributes from ``off`` to the end of ``body`` (type -> payload)."""
    out = {}
    while off + _ATTR.size <= len(body):
        length, attr_type = _ATTR.unpack_from(body, off)
        if length < _ATTR.size:
            break
        out[attr_type & 0x3FFF] = body[off + _ATTR.size:off + length]
        off += (length + 3) & ~3
    return out
