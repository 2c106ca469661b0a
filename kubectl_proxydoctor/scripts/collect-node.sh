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
  if grep -q "^$1	" "$sources"; then  # a later word on the same source replaces the earlier one
    awk -F '\t' -v k="$1" '$1 != k' "$sources" > "$sources.new" && mv "$sources.new" "$sources"
  fi
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
  if [ ! -e "$3" ]; then say "$2" "unavailable: $3 does not exist"
  elif [ -r "$3" ] && cat "$3" > "$out/$1" 2>/dev/null; then say "$2" "ok"
  else rm -f "$out/$1"; say "$2" "unavailable: needs root: $3 not readable"; fi
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
# legacy_save FAMILY-PREFIX: the legacy backend's dump when legacy tables exist (/proc files report
# size 0, so the names file's content decides), empty when none can exist, unknown when unreadable
legacy_save() {
  names=$out/$2
  if [ -s "$names" ]; then
    capture "$1-legacy-save.txt" "$1-legacy" "$1-legacy-save"
  elif [ -f "$names" ] || [ ! -e "$3" ]; then
    say "$1-legacy" "ok (no legacy tables: $3 is empty or does not exist)"; : > "$out/$1-legacy-save.txt"
  else
    say "$1-legacy" "unavailable: needs root: $3 not readable, so whether legacy tables exist is unknown"
  fi
}
legacy_save iptables ip_tables_names.txt /proc/net/ip_tables_names
legacy_save ip6tables ip6_tables_names.txt /proc/net/ip6_tables_names

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
  say modules "unavailable: /proc/modules does not exist (no module support): built-in or unknown"
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

# kube-proxy's own endpoints on loopback: a refused connection means nothing listens there
# (as `collect` says it); a 503 from /healthz is an answer (kube-proxy reports itself unhealthy)
fetch() {  # fetch FILE SOURCE PORT PATH
  url="http://127.0.0.1:$3$4"
  if command -v curl >/dev/null 2>&1; then
    curl -s -m 3 -o "$out/$1" "$url" -w '%{http_code}' > "$work/code" 2>/dev/null; rc=$?
    code=$(cat "$work/code")
    [ "$rc" = 7 ] && code=refused
  elif command -v wget >/dev/null 2>&1; then
    if wget -q -T 3 -O "$out/$1" "$url" 2>/dev/null; then code=200
    elif [ "$4" = /healthz ] && [ -s "$out/$1" ]; then code=503
    else code=failed; fi
  else
    say "$2" "unavailable: no curl or wget to ask 127.0.0.1:$3$4"; return
  fi
  case "$code" in
    200) say "$2" "ok" ;;
    503) if [ "$4" = /healthz ]; then say "$2" "ok (HTTP 503: kube-proxy reports itself unhealthy)"
         else rm -f "$out/$1"; say "$2" "unavailable: 127.0.0.1:$3$4 answered HTTP 503"; fi ;;
    refused) rm -f "$out/$1"
         say "$2" "unavailable: 127.0.0.1:$3$4: nothing listens on 127.0.0.1:$3 (kube-proxy not running here?)" ;;
    *) rm -f "$out/$1"; say "$2" "unavailable: 127.0.0.1:$3$4 did not answer ($code)" ;;
  esac
}
fetch kube-proxy-metrics.txt kube-proxy-metrics 10249 /metrics
fetch kube-proxy-mode.txt kube-proxy-mode 10249 /proxyMode
fetch kube-proxy-healthz.json kube-proxy-healthz 10256 /healthz
# /statusz (kube-proxy >= 1.33, ComponentStatusz gate): its "Binary version:" line names the version;
# not served there is not a read failure
code=""
fetch kube-proxy-statusz.txt kube-proxy-statusz 10249 /statusz
# not served: a 404, or a page without a version; any other failure keeps its own reason
if [ "$code" = 404 ] || { [ -f "$out/kube-proxy-statusz.txt" ] && ! grep -qi version "$out/kube-proxy-statusz.txt"; }; then
  rm -f "$out/kube-proxy-statusz.txt"
  say kube-proxy-statusz "unavailable: 127.0.0.1:10249/statusz not served (kube-proxy < 1.33, or its ComponentStatusz feature gate is off)"
fi

# kube-proxy's process (command line: flags, --config path; an empty file: none runs) and the
# tail of its container log. A collector pod without hostPID / a /var/log mount cannot see them
# (COLLECT_HOST_PROCESSES=0 / COLLECT_HOST_LOGS=0): the remote run reads them through the API.
if [ "${COLLECT_HOST_PROCESSES:-1}" = 1 ]; then
  : > "$out/kube-proxy-cmdline.txt"
  kubelet=""; embedding=""
  for d in /proc/[0-9]*; do
    comm=$(cat "$d/comm" 2>/dev/null)
    [ "$comm" = kubelet ] && kubelet=1
    case "$comm" in k3s-server|k3s-agent|kubelite) embedding=$comm ;; esac
    [ "$comm" = kube-proxy ] || continue
    args=$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null) || continue
    printf '%s\n' "${args% }" >> "$out/kube-proxy-cmdline.txt"
  done
  if [ ! -s "$out/kube-proxy-cmdline.txt" ] && [ "$(id -u)" != 0 ]; then
    rm -f "$out/kube-proxy-cmdline.txt"
    say kube-proxy-cmdline.txt "unavailable: needs root (CAP_NET_ADMIN): other users' processes may be hidden from non-root"
  elif [ ! -s "$out/kube-proxy-cmdline.txt" ] && [ -n "$embedding" ]; then
    rm -f "$out/kube-proxy-cmdline.txt"
    say kube-proxy-cmdline.txt "unavailable: kube-proxy is embedded in $embedding (no process of its own)"
  elif [ ! -s "$out/kube-proxy-cmdline.txt" ] && [ -z "$kubelet" ]; then
    rm -f "$out/kube-proxy-cmdline.txt"
    say kube-proxy-cmdline.txt "unavailable: host processes not visible: neither kube-proxy nor kubelet in /proc (a container without the host PID namespace?)"
  else
    say kube-proxy-cmdline.txt "ok"
  fi
else
  say kube-proxy-cmdline.txt "unavailable: host processes are not visible to the collector (no host PID namespace)"
fi
if [ "${COLLECT_HOST_LOGS:-1}" = 1 ]; then
  log=$(ls -t /var/log/pods/*_kube-proxy-*/kube-proxy/*.log 2>/dev/null | head -n 1)
  [ -n "$log" ] || log=$(ls -tL /var/log/containers/kube-proxy-*.log 2>/dev/null | head -n 1)
  if [ -z "$log" ]; then
    say kube-proxy.log "unavailable: kube-proxy log does not exist here (no /var/log/pods/*_kube-proxy-*/ or /var/log/containers/kube-proxy-*.log)"
  elif [ ! -r "$log" ]; then
    say kube-proxy.log "unavailable: needs root: $log not readable"
  elif tail -c 262144 "$log" > "$out/kube-proxy.log" 2> "$work/err"; then
    say kube-proxy.log "ok"
  else
    rm -f "$out/kube-proxy.log"; say kube-proxy.log "unavailable: $log: $(head -c 200 "$work/err")"
  fi
else
  say kube-proxy.log "unavailable: host logs are not visible to the collector (no /var/log mount)"
fi

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
