#!/usr/bin/env bash
# GPU checks in one command: the `gpu`-marked tests and every benchmarks/bench_*.py, with
# logs, result rows and a rendered RESULTS.md written into OUTDIR, and a short table last.
#
#   benchmarks/gpu_check.sh OUTDIR
#
# Works from a source checkout whose Rust extension was built elsewhere (a prebuilt
# qgfast/_native.abi3.so in the package) on a machine with torch, triton, numpy and pytest
# only: tests needing other packages skip themselves. Stays inside GPU_CHECK_BUDGET s (540,
# under the device tool's 10-minute command limit): tests get GPU_CHECK_TEST_TIMEOUT s (150),
# each benchmark at most GPU_CHECK_BENCH_TIMEOUT s (300) and never more than what is left.
# Without CUDA it refuses, unless QGFAST_GPU_CHECK_ALLOW_CPU=1 (used to test this script);
# QGFAST_GPU_CHECK_QUICK=1 passes --quick to the benchmarks.
set -uo pipefail

out=${1:?usage: benchmarks/gpu_check.sh OUTDIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$repo" || exit 2

py=${PYTHON:-python3}
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export QGFAST_BENCH_RUN_ID=${QGFAST_BENCH_RUN_ID:-gpucheck-$(date -u +%Y%m%dT%H%M%SZ)-$(hostname)}
test_limit=${GPU_CHECK_TEST_TIMEOUT:-150}
bench_limit=${GPU_CHECK_BENCH_TIMEOUT:-300}
deadline=$(( $(date +%s) + ${GPU_CHECK_BUDGET:-540} ))
quick=()
[ "${QGFAST_GPU_CHECK_QUICK:-0}" = 1 ] && quick=(--quick)

summary="$out/summary.txt"
: >"$summary"
failed=0
record() {  # record NAME RC
  printf '%-28s %s\n' "$1" "$([ "$2" = 0 ] && echo ok || echo "FAILED (rc $2)")" | tee -a "$summary"
  [ "$2" = 0 ] || failed=1
}

"$py" -m qgfast info --json >"$out/info.json" 2>&1
record "qgfast info" $?
"$py" - "$out/info.json" <<'PY' | tee -a "$summary"
import json, os, sys
info = json.load(open(sys.argv[1]))
gpus = ", ".join(g["name"] for g in info["devices"]["gpus"]) or "none"
print(f"device: {gpus}; torch {info['versions']['torch']}, triton {info['versions']['triton']}")
print(f"native extension: {'imports' if info['native']['available'] else info['native']}")
if not info["devices"]["cuda_available"] and os.environ.get("QGFAST_GPU_CHECK_ALLOW_CPU") != "1":
    sys.exit("no CUDA device: the GPU checks need one (QGFAST_GPU_CHECK_ALLOW_CPU=1 overrides)")
PY
cuda_rc=${PIPESTATUS[0]}
if [ "$cuda_rc" != 0 ]; then
  record "cuda present" "$cuda_rc"
  exit 1
fi

# -m gpu replaces the default `-m 'not slow'`; exit 5 (nothing collected) counts as a failure.
timeout "$test_limit" "$py" -m pytest -m gpu -p no:cacheprovider -q -ra tests \
  >"$out/gpu-tests.log" 2>&1
record "gpu tests" $?
tail -n 3 "$out/gpu-tests.log" | tee -a "$summary"

: >"$out/bench.log"
# the bandwidth floor first (every later row is read against it), then the rest by name
others=$(cd benchmarks && ls bench_*.py | sed 's/\.py$//' | grep -vx bench_bandwidth)
for name in bench_bandwidth $others; do
  left=$(( deadline - $(date +%s) - 15 ))
  limit=$(( left < bench_limit ? left : bench_limit ))
  if [ "$limit" -le 0 ]; then
    record "$name" "skipped: budget spent"
    continue
  fi
  timeout "$limit" "$py" -m "qgfast.bench.$name" --out "$out/results.jsonl" "${quick[@]}" \
    >>"$out/bench.log" 2>&1
  record "$name" $?
done

if [ -s "$out/results.jsonl" ]; then
  "$py" -m qgfast.bench.render_results "$out/results.jsonl" --out "$out/RESULTS.md"
  record "render RESULTS.md" $?
  "$py" - "$out/results.jsonl" <<'PY' | tee -a "$summary"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print(f"\n{'op':<18}{'provider':<22}{'shape':<30}{'dtype':<15}{'mode':<9}{'p50 ms':>10}  GB/s")
for r in rows:
    rate = r["extra"].get("GB_per_s", "")
    print(f"{r['op']:<18}{r['provider']:<22}{r['shape']:<30}{r['dtype']:<15}{r['mode']:<9}"
          f"{r['p50_ms']:>10.4f}  {rate}")
PY
fi
exit "$failed"
