#!/usr/bin/env bash
# First contact on a fresh machine: install dependencies, build, then work through the
# embedded FineWeb data: tokenize the bundled raw text with the official tokenizer exactly
# as the challenge does, check it against the bundled train shard, and inspect the
# tokenizer, the shards and the default config; then run the main job on the embedded
# default: `pgolf run` trains the tiny model, averages, evaluates, packs the artifact and
# evaluates what the artifact restores.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
scripts/setup.sh
pgolf=${BUILD_DIR:-build}/pgolf
out=${BUILD_DIR:-build}/quickstart
"$pgolf" --version
echo
"$pgolf" prepare --input data/text/fineweb_docs200.jsonl.xz --tokenizer data/tokenizers/fineweb_1024_bpe.model \
  --out "$out" --val-docs 0 --force
cmp "$out/fineweb_train_000000.bin" data/fineweb_mini_sp1024/fineweb_train_000000.bin
echo "quickstart: pgolf prepare reproduced data/fineweb_mini_sp1024/fineweb_train_000000.bin byte for byte"
echo
"$pgolf" inspect tokenizer data/tokenizers/fineweb_1024_bpe.model
echo
"$pgolf" inspect shard 'data/fineweb_mini_sp1024/*.bin' --tokenizer data/tokenizers/fineweb_1024_bpe.model --preview 60
echo
"$pgolf" inspect config configs/tiny.json --sources
echo
"$pgolf" run configs/tiny.json --out "$out/run" --force
echo
"$pgolf" inspect artifact "$out/run/artifact.pgolf" | sed -n 1,12p  # sed reads it all: no SIGPIPE under pipefail
echo
# The legality audit (SPEC 7, docs/eval.md) on the trained model: pgolf's own eval mode,
# score-first TTT with a per-window causal SLOT delta, passes; the batch-shared SLOT of the
# published records (#1333's causal_shared) is caught reading future tokens (exit 10): with
# windows of 256 and stride 64, token 300 lies in the context of window 2, which shares its
# batch and its delta with windows 0 and 1 that score the tokens before it.
audit_data=(--set data.val_max_tokens=4097 --set eval.ttt.enabled=true --set eval.ttt.chunk_tokens=1024)
"$pgolf" audit configs/tiny.json --checkpoint "$out/run/model.safetensors" "${audit_data[@]}" \
  --set eval.slot.variant=causal
echo
set +e
"$pgolf" audit configs/tiny.json --checkpoint "$out/run/model.safetensors" "${audit_data[@]}" \
  --set eval.slot.variant=causal_shared --positions 300,600
status=$?
set -e
if [ "$status" -ne 10 ]; then
  echo "quickstart: the audit of causal_shared SLOT should have exited 10 (a violation), got $status" >&2
  exit 1
fi
echo "quickstart: the audit caught the batch-shared SLOT delta, as it must"
