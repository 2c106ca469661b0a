#!/bin/bash
# Byte-compare the CLI's outputs of two source trees on every fixture capture (issue 18's merge
# condition for a faster path): check -o json, check (text), status -o json, check -n default.
#   bench/compare_outputs.sh BASE_TREE NEW_TREE OUTDIR [EXTRA_CAPTURE...]
# Each tree is a directory holding the kubectl_proxydoctor package (e.g. `git archive main` unpacked).
set -u
BASE=$1; NEW=$2; OUT=$3; shift 3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
captures=$( (find "$ROOT/tests/fixtures" /work/shared/fixtures \( -name meta.json -o -name 'iptables-*.txt' \
              -o -name 'ip6tables-*.txt' \) -printf '%h\n' 2>/dev/null; printf '%s\n' "$@") | sort -u)
run() {  # tree outdir key capture
  local tree=$1 dir=$2 key=$3 cap=$4
  mkdir -p "$dir"
  cli() { (cd /tmp && PYTHONPATH=$tree "$PY" -m kubectl_proxydoctor "$@"); }
  cli check --from "$cap" -o json > "$dir/$key.check.json" 2>&1; echo "rc=$?" >> "$dir/$key.check.json"
  cli check --from "$cap" > "$dir/$key.check.txt" 2>&1; echo "rc=$?" >> "$dir/$key.check.txt"
  cli status --from "$cap" -o json > "$dir/$key.status.json" 2>&1; echo "rc=$?" >> "$dir/$key.status.json"
  cli check -n default --from "$cap" -o json > "$dir/$key.checkn.json" 2>&1; echo "rc=$?" >> "$dir/$key.checkn.json"
}
n=0
for cap in $captures; do
  key=$(echo "$cap" | sed 's#^/##; s#/#_#g')
  [ -n "$BASE" ] && run "$BASE" "$OUT/base" "$key" "$cap"
  run "$NEW" "$OUT/new" "$key" "$cap"
  n=$((n + 1))
done
files=$(ls "$OUT/new" | wc -l)
if diff -r "$OUT/base" "$OUT/new" > "$OUT/diff.txt"; then
  echo "$n captures, $files outputs: identical"
else
  echo "$n captures, $files outputs: DIFFERENT (see $OUT/diff.txt)"; exit 1
fi
