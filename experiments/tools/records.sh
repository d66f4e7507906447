#!/usr/bin/env bash
# The compact record of a sweep: per run folder, the files plot.py reads
# (config.json, metrics.jsonl, summary.json, status.json) and flags.cfg; no
# weights, backups or TensorBoard events. This is what docs/results/<figure>/
# runs/ holds, so that every table regenerates from committed data.
#
#   bash experiments/tools/records.sh copy runs/fig5 docs/results/fig5/runs
#   bash experiments/tools/records.sh pack runs/fig5 /tmp/records.tar.gz
set -euo pipefail

list() {  # NUL-separated relative paths of the record files under $1.
  (cd "$1" && find . -mindepth 2 -maxdepth 2 \
    \( -name config.json -o -name metrics.jsonl -o -name summary.json \
       -o -name status.json -o -name flags.cfg \) -print0 | sort -z)
}

case "${1:-}" in
  copy)
    src=${2:?usage: records.sh copy SWEEP_ROOT DEST}; dest=${3:?DEST}
    mkdir -p "$dest"
    list "$src" | (cd "$src" && tar -cf - --null -T -) | tar -xf - -C "$dest"
    echo "$(find "$dest" -mindepth 1 -maxdepth 1 -type d | wc -l) run folders in $dest"
    ;;
  pack)
    src=${2:?usage: records.sh pack SWEEP_ROOT ARCHIVE}; archive=${3:?ARCHIVE}
    list "$src" | (cd "$src" && tar -czf - --null -T -) > "$archive"
    ;;
  *)
    sed -n '2,9p' "$0"; exit 2 ;;
esac
