#!/usr/bin/env bash
# Regenerates the training goldens (run from the repository root; needs build/pgolf and
# Debian's /usr/bin/python3 with torch 1.13):
#   tests/reference/golden/optim_v1.safetensors     single-step optimizer goldens (float64)
#   tests/reference/golden/train_trajectory_v1.json 20 float32 training steps of the twin
# Both are deterministic: running this twice gives the same bytes (same machine and torch
# build; the twin runs with one thread).
set -euo pipefail

PY=${PYTHON:-/usr/bin/python3}
PGOLF=${PGOLF:-build/pgolf}
REF=tests/reference
GOLDEN=$REF/golden
CONFIG=$GOLDEN/train_tiny.json
INIT_SEED=1
STEPS=20

if [[ ! -x $PGOLF ]]; then
  echo "make_train_golden.sh: $PGOLF not found (run from the repository root after building)" >&2
  exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# a. optimizer goldens (prints its self-checks; fails if one fails)
"$PY" $REF/make_optim_golden.py "$GOLDEN/optim_v1.safetensors"

# b. training trajectory
"$PGOLF" init -c "$CONFIG" --seed $INIT_SEED -o "$tmp/init.safetensors" >/dev/null
"$PGOLF" inspect config "$CONFIG" > "$tmp/config.json"
"$PY" $REF/twin_train.py "$tmp/config.json" "$tmp/init.safetensors" --steps $STEPS --threads 1 \
  --config-name "$CONFIG" --init-seed $INIT_SEED \
  --generator "tests/reference/make_train_golden.sh (pgolf init --seed $INIT_SEED; tests/reference/twin_train.py --steps $STEPS --threads 1)" \
  > "$tmp/trajectory.json"

# Record paths relative to the repository root so the file does not depend on the checkout.
"$PY" - "$tmp/trajectory.json" "$GOLDEN/train_trajectory_v1.json" "$PWD" <<'EOF'
import json, os, sys
src, dst, root = sys.argv[1:4]
with open(src) as f:
    d = json.load(f)
d = {"golden_version": "1", **d}
d["train_files"] = [os.path.relpath(p, root) for p in d["train_files"]]
with open(dst, "w") as f:
    json.dump(d, f, indent=1)
    f.write("\n")
print(json.dumps({"wrote": dst, "loss_first": d["loss"][0], "loss_last": d["loss"][-1],
                  "grad_norm_first": d["grad_norm"][0], "grad_norm_last": d["grad_norm"][-1]}))
EOF
