#!/usr/bin/env bash
# Regenerates the checkpoint-interchange goldens (tests/model/test_interchange.cpp):
#  - golden/interchange_twin_v1.safetensors: random parameters written by the PyTorch twin;
#  - golden/interchange_pgolf_v1.safetensors: random parameters written by pgolf;
#  - golden/interchange_v1.json: the twin's float64 val_loss for both, in both eval modes, and
#    sliding over 4100 untrimmed tokens (short tail windows).
# Needs a build (build/) and Debian's python3-torch. Run from the repository root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
g=tests/reference/golden
py=/usr/bin/python3
resolved=$(mktemp)
build/pgolf inspect config $g/interchange.json > "$resolved"
build/tests/write_random_checkpoint $g/interchange.json 21 $g/interchange_pgolf_v1.safetensors
$py tests/reference/eval_checkpoint.py "$resolved" --write-init $g/interchange_twin_v1.safetensors --init random --seed 7
shard=data/fineweb_mini_sp1024/fineweb_val_000000.bin
out="{"
for ck in twin pgolf; do
  out+="\"$ck\": {"
  for mode in nonoverlap sliding; do
    loss=$($py tests/reference/eval_checkpoint.py "$resolved" $g/interchange_${ck}_v1.safetensors $shard \
      --mode $mode --stride 32 --max-tokens 4097 --dtype float64 | $py -c 'import json,sys; print(repr(json.load(sys.stdin)["val_loss"]))')
    out+="\"$mode\": $loss, "
  done
  # 4100 tokens, untrimmed: 4099 targets, so the last sliding windows are shorter than T.
  loss=$($py tests/reference/eval_checkpoint.py "$resolved" $g/interchange_${ck}_v1.safetensors $shard \
    --mode sliding --stride 32 --max-tokens 4100 --dtype float64 | $py -c 'import json,sys; print(repr(json.load(sys.stdin)["val_loss"]))')
  out+="\"sliding_untrimmed_4100\": $loss, "
  out="${out%, }}, "
done
out="${out%, }}"
echo "$out" | $py -c 'import json,sys; d=json.load(sys.stdin); d["stride"]=32; d["max_tokens"]=4097; print(json.dumps(d, indent=2))' > $g/interchange_v1.json
cat $g/interchange_v1.json
rm -f "$resolved"
