"""Per-mode interpreters (iptables, nftables, IPVS) into the mode-independent programmed view."""
