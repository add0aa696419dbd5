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
#   bench_b48     pgolf bench pr549, 48 x 2048 tokens (one GPU's share of the record's batch):
#                 ms/step, tokens/s, MFU against 989 TFLOP/s (FLOPs from bench_b1), peak memory
#   tiny_run      pgolf run tiny on the GPU (training capped at 120 s): val_bpb, artifact bytes
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
stages=${GPU_CHECK_STAGES:-gpu libraries version kernels backend bench_b1 bench_b48 tiny_run memcheck}
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
  grep 'host syncs per step' "$1" | tail -1 | sed 's/^ *//; s/ (cudaMalloc.*//'
  grep -m1 'peak memory' "$1" | sed 's/^ *//; s/  */ /g'
}
fig_bench_b48() {
  fig_bench "$1"
  python3 - "$out/bench_b1.json" "$out/bench_b48.json" <<'PY' 2>/dev/null || true
import json, sys
b1, b48 = (json.load(open(p)) for p in sys.argv[1:3])
flops = next(p["model_tflops_per_step"] for p in b1["phases"] if p["phase"] == "step" and "model_tflops_per_step" in p)
step = next(p for p in b48["phases"] if p["phase"] == "step")
tflops = flops * b48["batch"] / b1["batch"] / (step["ms_per_step"] / 1e3)
print(f"MFU {100 * tflops / b48['peak_tflops']:.3g}% ({tflops:.3g} TFLOP/s of {b48['peak_tflops']:.0f}; FLOPs from bench_b1 x {b48['batch']})")
PY
}
fig_tiny() {
  python3 - "$out/tiny_results.json" <<'PY' 2>/dev/null || grep -E 'val_bpb' "$1" | tail -1
import json, sys
r = json.load(open(sys.argv[1]))
print(f"status {r.get('status')}, val_bpb {r['final_eval']['val_bpb']:.4f} (float32), {r['val_bpb']:.4f} (artifact, {r['export']['artifact_bytes']:,} bytes), {len(r.get('train_losses', []))} steps")
PY
}
fig_memcheck() { grep -m1 -E 'ERROR SUMMARY|Device not supported|error' "$1" || true; }

cd "$here" || exit 2
run_stage gpu 20 fig_gpu nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv
nvidia-smi >>"$log" 2>&1 || true
run_stage libraries 30 fig_libraries "$bundle/run.sh" --check-libs
# Every pgolf command goes through the bundle's run.sh, so the bundle's libraries reach pgolf
# alone (not nvidia-smi, python3 or compute-sanitizer).
pg="$bundle/run.sh"
# ok only when pgolf runs and its CUDA backend is usable (the line naming the chosen GPU).
run_stage version 20 fig_version bash -c 'out=$("$0" pgolf --version 2>&1); rc=$?; printf "%s\n" "$out";
  [ "$rc" = 0 ] && grep -q "^cuda backend: " <<<"$out"' "$pg"
run_stage kernels 90 fig_gtest "$pg" pgolf_gpu_kernel_tests --gtest_brief=1
run_stage backend 180 fig_gtest "$pg" pgolf_gpu_tests --gtest_brief=1
pr549="$bundle/tree/configs/pr549.json"
run_stage bench_b1 90 fig_bench "$pg" pgolf bench -c "$pr549" --set backend=cuda --batch 1 --steps 3 --warmup 1 \
  --phases forward,step --profile --results "$out/bench_b1.json"
# The record's per-GPU batch before the tiny run, so that a tight budget cuts the latter. Its
# model FLOPs are bench_b1's times 48 (the same sequences, 48 of them): MFU without a second,
# profiled pass of a step that may take minutes.
run_stage bench_b48 200 fig_bench_b48 "$pg" pgolf bench -c "$pr549" --set backend=cuda --batch 48 --steps 1 --warmup 0 \
  --phases step --results "$out/bench_b48.json"
run_stage tiny_run 200 fig_tiny bash -c '"$0" pgolf run "$1" --out "$2" --set backend=cuda --set train.wallclock_cap_s=120 &&
  cp "$2/results.json" "$3"' "$pg" "$bundle/tree/configs/tiny.json" "$work/tiny" "$out/tiny_results.json"
sanitizer=$(command -v compute-sanitizer || true)
for d in "${CUDA_HOME:-}" /usr/local/cuda /opt/nvidia/compute-sanitizer; do
  [ -z "$sanitizer" ] && [ -n "$d" ] && [ -x "$d/bin/compute-sanitizer" ] && sanitizer="$d/bin/compute-sanitizer"
  [ -z "$sanitizer" ] && [ -n "$d" ] && [ -x "$d/compute-sanitizer" ] && sanitizer="$d/compute-sanitizer"
done
if [ -n "$sanitizer" ]; then
  run_stage memcheck 120 fig_memcheck "$sanitizer" --tool memcheck --error-exitcode 1 --target-processes all \
    "$pg" pgolf bench -c "$bundle/tree/configs/tiny.json" --set backend=cuda --batch 1 --steps 1 --warmup 0 --phases step
else
  rows+=("| memcheck | skipped: no compute-sanitizer (PATH, CUDA_HOME/bin, /usr/local/cuda/bin) | | |")
  json_rows+=("{\"stage\": \"memcheck\", \"status\": \"skipped: no compute-sanitizer\"}")
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
