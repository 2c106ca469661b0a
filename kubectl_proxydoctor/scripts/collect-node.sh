#!/bin/sh
# collect-node.sh: capture this node's kube-proxy state with stock tools only, read-only, and
# write it to stdout as a tar of a capture directory (see README "Capture format"):
#     sh collect-node.sh > node.tar && kubectl proxydoctor check --from node.tar
# Environment: NODE_NAME (default: hostname), COLLECT_CONNTRACK=1 to include conntrack -L
# (can be large), CONNTRACK_MAX_BYTES (default 64 MiB).
# It never writes a rule, a sysctl or a conntrack entry: every command here only lists.
set -u
umask 077
work=$(mktemp -d "${TMPDIR:-/tmp}/proxydoctor.XXXXXX") || { echo "collect-node.sh: mktemp failed" >&2; exit 3; }
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
out="$work/capture"
mkdir "$out"
sources="$work/sources"
: > "$sources"

# say SOURCE STATUS: remember what happened to one source, for meta.json
say() {
  reason=$(printf '%s' "$2" | tr '\n\t"\\' '    ' | cut -c1-300)
  printf '%s\t%s\n' "$1" "$reason" >> "$sources"
}

# capture FILE SOURCE CMD...: run a read-only command into FILE, or say why it could not
capture() {
  file=$1; src=$2; shift 2
  if ! command -v "$1" >/dev/null 2>&1; then
    say "$src" "unavailable: $1 not found"
    return 1
  fi
  if "$@" > "$out/$file" 2> "$work/err"; then
    say "$src" "ok"
    return 0
  fi
  rm -f "$out/$file"
  say "$src" "unavailable: $(head -c 300 "$work/err")"
  return 1
}

# copy FILE SOURCE PATH: copy a /proc or /sys file
copy() {
  if [ -r "$3" ]; then cat "$3" > "$out/$1" && say "$2" "ok"; else say "$2" "unavailable: $3 not readable"; fi
}

if [ "$(id -u)" != 0 ]; then
  say "privileges" "unavailable: needs root (CAP_NET_ADMIN, CAP_NET_RAW) to read rules"
fi

# iptables: the nf_tables backend lists without side effects; the legacy one only when its
# tables exist (listing an absent legacy table would create it)
capture iptables-save.txt iptables iptables-save
capture iptables-nft-save.txt iptables-nft iptables-nft-save
capture ip6tables-nft-save.txt ip6tables-nft ip6tables-nft-save
copy ip_tables_names.txt ip_tables_names /proc/net/ip_tables_names
copy ip6_tables_names.txt ip6_tables_names /proc/net/ip6_tables_names
if [ -s /proc/net/ip_tables_names ]; then
  capture iptables-legacy-save.txt iptables-legacy iptables-legacy-save
else
  say iptables-legacy "ok"; : > "$out/iptables-legacy-save.txt"
fi
if [ -s /proc/net/ip6_tables_names ]; then
  capture ip6tables-legacy-save.txt ip6tables-legacy ip6tables-legacy-save
else
  say ip6tables-legacy "ok"; : > "$out/ip6tables-legacy-save.txt"
fi

# nftables
capture nft-ruleset.json nftables nft -j list ruleset
capture nft-ruleset.txt nftables-text nft list ruleset

# IPVS, ipsets, addresses
if [ -e /proc/net/ip_vs ]; then
  capture ipvsadm.txt ipvs ipvsadm -Ln --exact
  copy proc-net-ip_vs.txt ipvs-proc /proc/net/ip_vs
else
  say ipvs "unavailable: kernel has no IP_VS (/proc/net/ip_vs missing)"
fi
capture ipset-save.txt ipset ipset save
capture ip-addr.json addresses ip -j addr show

# kernel
uname -r > "$out/kernel.txt" && say kernel "ok"
if [ -r /proc/config.gz ] && command -v zcat >/dev/null 2>&1; then
  zcat /proc/config.gz > "$out/kernel-config.txt" && say kernel-config "ok"
elif [ -r "/boot/config-$(uname -r)" ]; then
  cat "/boot/config-$(uname -r)" > "$out/kernel-config.txt" && say kernel-config "ok"
else
  say kernel-config "unavailable: no /proc/config.gz or /boot/config-$(uname -r)"
fi
if [ -r /proc/modules ]; then
  cat /proc/modules > "$out/modules.txt"
  builtin="/lib/modules/$(uname -r)/modules.builtin"
  [ -r "$builtin" ] && cat "$builtin" >> "$out/modules.txt"
  say modules "ok"
else
  say modules "unavailable: /proc/modules missing (modules built-in or unknown)"
fi

# sysctls that matter to kube-proxy
for key in net/ipv4/ip_forward net/ipv4/conf/all/route_localnet net/bridge/bridge-nf-call-iptables \
    net/bridge/bridge-nf-call-ip6tables net/netfilter/nf_conntrack_count net/netfilter/nf_conntrack_max \
    net/netfilter/nf_conntrack_tcp_be_liberal net/ipv4/vs/conntrack net/ipv4/vs/expire_nodest_conn \
    net/ipv4/vs/conn_reuse_mode net/ipv4/conf/all/arp_ignore net/ipv4/conf/all/arp_announce; do
  if [ -r "/proc/sys/$key" ]; then
    printf '%s = %s\n' "$(echo "$key" | tr / .)" "$(cat "/proc/sys/$key")" >> "$out/sysctl.txt"
  fi
done
[ -s "$out/sysctl.txt" ] && say sysctl "ok"

# kube-proxy's own endpoints on loopback
fetch() {
  if command -v curl >/dev/null 2>&1; then curl -s -m 3 "$1"
  elif command -v wget >/dev/null 2>&1; then wget -q -T 3 -O - "$1"
  else echo "no curl or wget" >&2; return 127; fi
}
fetch http://127.0.0.1:10249/metrics > "$out/kube-proxy-metrics.txt" 2>/dev/null \
  && [ -s "$out/kube-proxy-metrics.txt" ] && say kube-proxy-metrics "ok" \
  || { rm -f "$out/kube-proxy-metrics.txt"; say kube-proxy-metrics "unavailable: 127.0.0.1:10249 did not answer"; }
fetch http://127.0.0.1:10249/proxyMode > "$out/kube-proxy-mode.txt" 2>/dev/null \
  && [ -s "$out/kube-proxy-mode.txt" ] && say kube-proxy-mode "ok" \
  || { rm -f "$out/kube-proxy-mode.txt"; say kube-proxy-mode "unavailable: 127.0.0.1:10249 did not answer"; }
fetch http://127.0.0.1:10256/healthz > "$out/kube-proxy-healthz.json" 2>/dev/null \
  && [ -s "$out/kube-proxy-healthz.json" ] && say kube-proxy-healthz "ok" \
  || { rm -f "$out/kube-proxy-healthz.json"; say kube-proxy-healthz "unavailable: 127.0.0.1:10256 did not answer"; }
# /statusz (kube-proxy >= 1.33, ComponentStatusz gate): its "Binary version:" line names the version
if command -v curl >/dev/null 2>&1; then curl -sf -m 3 http://127.0.0.1:10249/statusz
else fetch http://127.0.0.1:10249/statusz; fi > "$out/kube-proxy-statusz.txt" 2>/dev/null \
  && grep -qi version "$out/kube-proxy-statusz.txt" && say kube-proxy-statusz "ok" \
  || { rm -f "$out/kube-proxy-statusz.txt"
       say kube-proxy-statusz "unavailable: 127.0.0.1:10249/statusz not served (kube-proxy < 1.33 or ComponentStatusz off)"; }

if [ "${COLLECT_CONNTRACK:-0}" = 1 ]; then
  if command -v conntrack >/dev/null 2>&1; then
    conntrack -L -o extended 2>/dev/null | head -c "${CONNTRACK_MAX_BYTES:-67108864}" > "$out/conntrack.txt"
    say conntrack "ok"
  else
    say conntrack "unavailable: conntrack not found"
  fi
fi

# meta.json: the node and what happened to every source
node=${NODE_NAME:-$(hostname 2>/dev/null || uname -n)}
{
  printf '{"node": "%s", "collector": "collect-node.sh", "captured_at": "%s", "sources": {' \
    "$node" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  first=1
  while IFS="$(printf '\t')" read -r src status; do
    [ $first = 1 ] || printf ', '
    first=0
    printf '"%s": "%s"' "$src" "$status"
  done < "$sources"
  printf '}}\n'
} > "$out/meta.json"

tar -C "$work" -cf - capture
