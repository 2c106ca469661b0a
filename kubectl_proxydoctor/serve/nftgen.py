"""The nf_tables ruleset generation: a cheap "did any rule change?" for the live node.

The kernel bumps one generation ID on every nf_tables commit (NFT_MSG_GETGEN over NETLINK_NETFILTER;
one request, no rules dumped). kube-proxy's nftables mode and iptables on the nf_tables backend
(iptables-nft) both commit through it, so an unchanged ID means unchanged rules and a full re-read
(iptables-nft-save of 45,000 rules costs seconds of CPU) can be skipped. IPVS and the legacy
iptables backend change nothing here: callers must not trust the ID for those.
"""

from __future__ import annotations

import os
import socket
import struct

from kubectl_proxydoctor.collect.netns import in_netns

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWGEN = 15
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2


class GenerationError(OSError):
    pass


def _socket_in(netns: str | None) -> socket.socket:
    """A NETLINK_NETFILTER socket in the host's or ``netns``'s network namespace (a socket stays in
    the namespace it was created in; the helper thread that enters the namespace then ends)."""
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        return in_netns(netns, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER))
    except OSError as e:
        raise GenerationError(str(e)) from e


class NftGeneration:
    """Reads the ruleset generation ID of one network namespace; ``read()`` returns it or None."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._sock: socket.socket | None = None
        self._seq = 0

    def read(self) -> int | None:
        """The current generation ID, or None when it cannot be read (no nf_tables, no privilege)."""
        try:
            if self._sock is None:
                self._sock = _socket_in(self.netns)
                self._sock.settimeout(2.0)
            self._seq += 1
            msg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN
            body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0)
            header = struct.pack("=IHHII", 16 + len(body), msg_type, NLM_F_REQUEST, self._seq, 0)
            self._sock.send(header + body)
            while True:
                data = self._sock.recv(65536)
                gen = self._parse(data)
                if gen is not None:
                    return gen
        except (OSError, GenerationError, struct.error):
            self.close()
            return None

    def _parse(self, data: bytes) -> int | None:
        offset = 0
        while offset + 16 <= len(data):
            length, msg_type, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
            if length < 16:
                raise GenerationError("bad netlink message")
            if seq == self._seq:
                if msg_type == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", data, offset + 16)
                    raise GenerationError(f"GETGEN failed: {os.strerror(-err)}")
                if msg_type == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN:
                    attr = offset + 16 + 4  # after nlmsghdr and nfgenmsg
                    while attr + 4 <= offset + length:
                        alen, atype = struct.unpack_from("=HH", data, attr)
                        if alen < 4:
                            break
                        if atype & 0x3FFF == NFTA_GEN_ID:
                            return struct.unpack_from(">I", data, attr + 4)[0]
                        attr += (alen + 3) & ~3
                    raise GenerationError("NEWGEN without a generation ID")
            offset += (length + 3) & ~3
        return None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
