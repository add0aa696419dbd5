#!/usr/bin/env bash
# The device check (docs/gpu.md): everything pgolf can say about itself on a real GPU, in one
# command that fits one call of the device tool. Stages, each under its own time bound and all
# under one overall budget (a slow stage is cut off, the others still run, the table always
# prints):
#   gpu           nvidia-smi: the GPU, driver, memory, clocks
#   libraries     the bundle's run script resolves the CUDA libraries (cuBLASLt, NCCL)
#   version       pgolf --version: the CUDA backend, the chosen GPU and its properties
#   kernels       pgolf_gpu_kernel_tests: every kernel family against the CPU reference
#   backend       pgolf_gpu_tests: the whole model per record option set, TTT + SLOT, and a
#                 micro `pgolf run` through the CUDA path against the CPU path
#   bench_b1      pgolf bench pr549, 1 x 2048 tokens, per-op profile (ms, TFLOP/s, MFU)
#   tiny_run      pgolf run tiny on the GPU (training capped at 120 s): val_bpb, artifact bytes
#   bench_b48     pgolf bench pr549, 48 x 2048 tokens (one GPU's share of the record's batch):
#                 ms/step, tokens/s, MFU against 989 TFLOP/s, peak memory
#   memcheck      compute-sanitizer memcheck of one training step of tiny (where it works)
#
#   scripts/gpu_check.sh [BUNDLE_DIR]      default .device-bundle (scripts/device_bundle.sh)
# The benches and the run ask for backend cuda: without a usable GPU they fail naming why
# instead of measuring the CPU.
# Environment: OUT (where results go; default gpu-check-out), GPU_CHECK_SECONDS (overall budget,
# default 420), GPU_CHECK_STAGES (space-separated subset, default all, in the order above).
# Writes into OUT (at most 8 files, as the device tool returns them): gpu_check.log (every
# stage's output), table.md (the summary, printed last), summary.json, bench_b1.json,
# bench_b48.json, tiny_results.json.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bundle=$(cd "${1:-$here/.device-bundle}" 2>/dev/null && pwd) ||
  { echo "gpu_check.sh: no bundle at ${1:-$here/.device-bundle} (build one with scripts/device_bundle.sh)" >&2; exit 2; }
out=${OUT:-$here/gpu-check-out}
mkdir -p "$out"
log="$out/gpu_check.log"
: >"$log"
budget=${GPU_CHECK_SECONDS:-420}
stages=${GPU_CHECK_STAGES:-gpu libraries version kernels backend bench_b1 tiny_run bench_b48 memcheck}
start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rows=()
json_rows=()

elapsed() { echo $(( $(date +%s) - start )); }
# run_stage NAME BOUND_SECONDS FIGURE_FUNCTION COMMAND...: runs COMMAND under
# min(BOUND, what is left of the budget less 10 s), appends its output to the log, and records
# status (ok, failed (exit N), timed out after N s, skipped), seconds and the figure that
# FIGURE_FUNCTION prints from the stage's output file.
run_stage() {
  local name=$1 bound=$2 figure=$3
  shift 3
  case " $stages " in *" $name "*) ;; *) return 0 ;; esac
  local left=$(( budget - $(elapsed) - 10 ))
  [ "$bound" -gt "$left" ] && bound=$left
  if [ "$bound" -lt 5 ]; then
    rows+=("| $name | skipped: the budget of ${budget} s is spent | | |")
    json_rows+=("{\"stage\": \"$name\", \"status\": \"skipped\"}")
    return 0
  fi
  local t0 rc status seconds text
  t0=$(date +%s)
  {
    echo "===== $name (bound ${bound} s): $*"
  } >>"$log"
  timeout --kill-after=5 "$bound" "$@" >"$work/$name.out" 2>&1
  rc=$?
  seconds=$(( $(date +%s) - t0 ))
  cat "$work/$name.out" >>"$log"
  case "$rc" in
    0) status=ok ;;
    124|137) status="timed out after ${bound} s" ;;
    *) status="failed (exit $rc)" ;;
  esac
  echo "===== $name: $status in ${seconds} s" >>"$log"
  text=$("$figure" "$work/$name.out" 2>/dev/null | tr '\n' ' ' | sed 's/|/\//g; s/ *$//')
  rows+=("| $name | $status | $seconds | $text |")
  json_rows+=("{\"stage\": \"$name\", \"status\": \"$status\", \"seconds\": $seconds, \"figure\": $(printf '%s' "$text" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))' 2>/dev/null || echo '""')}")
  echo "gpu_check: $name: $status in ${seconds} s${text:+: $text}" >&2
}

# Figures read from each stage's output.
fig_gpu() { grep -v '^name' "$1" | head -1; }
fig_libraries() { grep -E '^run\.sh: lib' "$1" | sed 's/^run\.sh: //' | tr '\n' ';'; }
fig_version() { grep -E '^(cuda backend|gpu: none)' "$1" | head -1; }
fig_gtest() {
  local passed failed
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$1")
  failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$1")
  echo "${passed:-0} passed${failed:+, $failed failed: $(grep -E '^\[  FAILED  \] [A-Za-z]' "$1" | sed 's/^\[  FAILED  \] //; s/ (.*//' | head -4 | tr '\n' ' ')}"
  grep -m1 "no usable GPU" "$1" || true
}
fig_bench() {
  grep -m1 '^pgolf: ' "$1"
  grep -E '^  (forward|forward\+backward|training step) ' "$1" | sed 's/^ *//; s/  */ /g' | tr '\n' ';'
  grep -m1 'MFU' "$1" | sed 's/^ *//'
  grep -m1 'peak memory' "$1" | sed 's/^ *//; s/  */ /g'
}
fig_tiny() {
  python3 - "$out/tiny_results.json" <<'PY' 2>/dev/null || grep -E 'val_bpb' "$1" | tail -1
import json, sys
r = json.load(open(sys.argv[1]))
print(f"status {r.get('status')}, val_bpb {r['final_eval']['val_bpb']:.4f} (float32), {r['val_bpb']:.4f} (artifact, {r['export']['artifact_bytes']:,} bytes), {len(r.get('train_losses', []))} steps")
PY
}
fig_memcheck() { grep -m1 -E 'ERROR SUMMARY|Device not supported|error' "$1" || true; }

cd "$here"
run_stage gpu 20 fig_gpu nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv
nvidia-smi >>"$log" 2>&1 || true
run_stage libraries 30 fig_libraries "$bundle/run.sh" --check-libs
env_lines=$("$bundle/run.sh" --print-env 2>>"$log") && eval "$env_lines" ||
  echo "gpu_check: the bundle's libraries do not resolve here: see $log" >&2
# ok only when the CUDA backend is usable (the line naming the chosen GPU is there).
run_stage version 20 fig_version bash -c 'pgolf --version | tee /dev/stderr | grep -q "^cuda backend: "'
run_stage kernels 90 fig_gtest pgolf_gpu_kernel_tests --gtest_brief=1
run_stage backend 180 fig_gtest pgolf_gpu_tests --gtest_brief=1
pr549="$bundle/tree/configs/pr549.json"
run_stage bench_b1 90 fig_bench pgolf bench -c "$pr549" --set backend=cuda --batch 1 --steps 3 --warmup 1 --phases forward,step --profile \
  --results "$out/bench_b1.json"
run_stage tiny_run 200 fig_tiny bash -c "pgolf run '$bundle/tree/configs/tiny.json' --out '$work/tiny' --set backend=cuda \
  --set train.wallclock_cap_s=120 && cp '$work/tiny/results.json' '$out/tiny_results.json'"
run_stage bench_b48 200 fig_bench pgolf bench -c "$pr549" --set backend=cuda --batch 48 --steps 1 --warmup 0 --phases step \
  --results "$out/bench_b48.json"
if command -v compute-sanitizer >/dev/null 2>&1; then
  run_stage memcheck 120 fig_memcheck compute-sanitizer --tool memcheck --error-exitcode 1 \
    pgolf bench -c "$bundle/tree/configs/tiny.json" --set backend=cuda --batch 1 --steps 1 --warmup 0 --phases step
else
  rows+=("| memcheck | skipped: no compute-sanitizer on PATH | | |")
fi

gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
commit=$(sed -n 's/^commit: //p' "$bundle/MANIFEST")
{
  echo "gpu_check $(date -u +%Y-%m-%d) on ${gpu_name:-no GPU found}, bundle commit $commit, $(elapsed) s of ${budget}"
  echo
  echo "| stage | status | seconds | figures |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} >"$out/table.md"
{
  echo "{\"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\", \"gpu\": \"${gpu_name:-}\", \"commit\": \"$commit\", \"seconds\": $(elapsed), \"stages\": ["
  (IFS=,; echo "${json_rows[*]-}")
  echo "]}"
} >"$out/summary.json"
cat "$out/table.md"
grep -q '| ok |' "$out/table.md" && ! grep -qE '\| (failed|timed out)' "$out/table.md"
