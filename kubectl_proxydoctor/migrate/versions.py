"""Version strings as kube-proxy, the kernel and nft print them, parsed for comparison."""

from __future__ import annotations

import re

_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")

NFTABLES_MIN_KERNEL = (5, 13, 0)  # pkg/proxy/nftables: utilkernel.NFTablesKubeProxyKernelVersion
NFT_MIN_USERSPACE = (1, 0, 1)  # knftables needs nft >= 1.0.1 (docs, KEP-3866)
CT_FIXED_KERNEL = (6, 1, 0)  # kernels before 6.1 have the conntrack bug the INVALID-drop rule hides
NFTABLES_ALPHA = (1, 29, 0)
NFTABLES_BETA = (1, 31, 0)
NFTABLES_GA = (1, 33, 0)
IPVS_DEPRECATED = (1, 35, 0)


def parse_version(text: str | None) -> tuple[int, int, int] | None:
    """(major, minor, patch) of the first version number in ``text`` ("v1.30.3", "nftables v1.0.6")."""
    if not text:
        return None
    m = _VERSION.search(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def show(version: tuple[int, int, int]) -> str:
    return ".".join(str(p) for p in version)
