#!/usr/bin/env bash
# One side-by-side sitting: FlowStone and every peer of ../shared/bench, interleaved by
# repetition on the same server, then latency for each, then FlowStone's own workloads, the
# peers' realistic workload (5 ms jobs) and Dagster's asset workloads (if set up).
#
#   PEERBENCH_VENV=/tmp/peerbench benchmarks/sitting.sh    # after ../shared/bench/setup.sh
#                                                          # and: $PEERBENCH_VENV/bin/pip install -e .
# Results: $OUT (peers, the harness's format) and $OUT_FS (FlowStone), JSON lines.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bench=${PEERBENCH_DIR:-$here/../shared/bench}
venv=${PEERBENCH_VENV:-/tmp/peerbench}
stamp=$(date +%Y%m%d-%H%M)
OUT=${OUT:-$here/docs/results/peers-$stamp.jsonl}
OUT_FS=${OUT_FS:-$here/docs/results/flowstone-$stamp.jsonl}
REPS=${REPS:-3}
PEERS=${PEERS:-"oban procrastinate pgqueuer pgqueuer-asyncpg chancy"}
mkdir -p "$(dirname "$OUT")" "$(dirname "$OUT_FS")"
OUT=$(realpath "$OUT"); OUT_FS=$(realpath "$OUT_FS")
py="$venv/bin/python"

for rep in $(seq "$REPS"); do
  for peer in $PEERS; do
    (cd "$bench" && timeout 420 "$py" run.py --peer "$peer" --workload throughput --append "$OUT" >/dev/null) || echo "$peer throughput failed" >&2
  done
  (cd "$here" && timeout 420 "$py" -m benchmarks throughput --append "$OUT_FS" >/dev/null 2>&1) || echo "flowstone throughput failed" >&2
done
for peer in $PEERS; do
  (cd "$bench" && timeout 180 "$py" run.py --peer "$peer" --workload latency --append "$OUT" >/dev/null) || echo "$peer latency failed" >&2
done
(cd "$here" && timeout 180 "$py" -m benchmarks latency --append "$OUT_FS" >/dev/null 2>&1) || echo "flowstone latency failed" >&2
if [ "${SKIP_OWN:-0}" != 1 ]; then
  for workload in ${OWN:-realistic scaleout pgbouncer backlog memory chain assets}; do
    (cd "$here" && timeout 1800 "$py" -m benchmarks "$workload" --append "$OUT_FS" >/dev/null 2>&1) \
      || echo "flowstone $workload failed" >&2
  done
  # The realistic workload (5 ms jobs at concurrency 100) for the peers, beside FlowStone's.
  (cd "$here" && timeout 1800 "$py" -m benchmarks.peers_realistic --peers "${REALISTIC_PEERS:-$(echo $PEERS | tr ' ' ,)}" \
    --append "$OUT" >/dev/null 2>&1) || echo "peers realistic failed" >&2
fi
# Dagster's side of the asset workloads, when its virtualenv exists (benchmarks/dagster/setup.sh).
dagster=${DAGSTERBENCH_VENV:-/tmp/dagsterbench}
if [ "${SKIP_DAGSTER:-0}" != 1 ] && [ -x "$dagster/bin/python" ]; then
  (cd "$here" && timeout 1800 "$dagster/bin/python" benchmarks/dagster/run.py --append "$OUT" >/dev/null 2>&1) \
    || echo "dagster failed" >&2
fi
echo "peers: $OUT"
echo "flowstone: $OUT_FS"
