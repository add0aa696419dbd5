#!/usr/bin/env python3
"""Eval throughput of the PyTorch twin (eval_ttt_slot.py, docs/eval.md), as a yardstick
for pgolf's eval: scored targets/s for sliding, sliding+TTT and sliding+TTT+causal SLOT.

    /usr/bin/python3 tests/reference/bench_twin_eval.py CONFIG.json [--threads 2] \
        [--max-tokens N] [--seed 7] [--modes sliding,ttt,ttt_slot]

CONFIG is a resolved config (`./build/pgolf inspect config configs/tiny.json > /tmp/tiny.json`);
its `eval` section gives every hyperparameter (TTT and SLOT are switched on per mode, SLOT
as `causal` with the configured placement). Parameters are random (the goldens' style,
make_golden.random_params, so the projections are non-zero). The val tokens are read as
eval_ttt_slot.py does; --max-tokens N replaces data.val_max_tokens. Prints one JSON line
per mode (float32; the time covers scoring, SLOT fitting and TTT training, not loading).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin  # noqa: E402
import eval_ttt_slot as ets  # noqa: E402
from make_golden import random_params  # noqa: E402

MODES = {
    "sliding": {"ttt": {"enabled": False}, "slot": {"variant": "none"}},
    "ttt": {"ttt": {"enabled": True}, "slot": {"variant": "none"}},
    "ttt_slot": {"ttt": {"enabled": True}, "slot": {"variant": "causal"}},
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=0,
                    help="use the first N val tokens (0: data.val_max_tokens of the config)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES))
    args = ap.parse_args()
    torch.set_num_threads(max(1, args.threads))
    full = twin.read_config_json(args.config)
    if args.max_tokens > 0:
        full = ets._deep_update(full, {"data": {"val_max_tokens": args.max_tokens}})
    cfg = twin.load_config(full)
    tokens = ets.load_val_tokens(full, cfg["seq_len"], cfg["vocab_size"])
    params = random_params(cfg, np.random.RandomState(args.seed))
    for mode in args.modes.split(","):
        if mode not in MODES:
            ap.error(f"unknown mode {mode!r}")
        ev = ets.eval_settings(full, MODES[mode])
        res, _ = ets.run_eval(cfg, params, tokens, ev)
        print(json.dumps({
            "config_name": os.path.basename(args.config),
            "mode": res["mode"],
            "threads": torch.get_num_threads(),
            "tokens": int(len(tokens)),
            "seq_len": cfg["seq_len"],
            "stride": int(ev["stride"]),
            "batch_windows": int(ev["batch_windows"]),
            "scored": res["scored"],
            "windows": res["windows"],
            "chunks": res["chunks"],
            "ttt_steps": res["ttt_steps"],
            "slot_steps": int(ev["slot"]["steps"]) if ev["slot"]["variant"] != "none" else 0,
            "val_loss": res["val_loss"],
            "seconds": res["seconds"],
            "tokens_per_s": res["tokens_per_s"],
            "torch": torch.__version__,
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
