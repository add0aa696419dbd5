#!/usr/bin/env python3
"""Evaluate a safetensors checkpoint on a challenge token shard with the PyTorch twin
(SPEC 6.1 non-overlapping, 6.2 sliding window with every target scored exactly once).

    /usr/bin/python3 tests/reference/eval_checkpoint.py CONFIG.json CHECKPOINT.safetensors SHARD.bin \
        [--mode nonoverlap|sliding] [--stride 64] [--max-tokens N] [--dtype float32|float64]
    /usr/bin/python3 tests/reference/eval_checkpoint.py CONFIG.json --write-init OUT.safetensors --seed S \
        [--init init|random]

CONFIG is a resolved config (`pgolf inspect config FILE > CONFIG.json`). Prints one JSON
object: val_loss (mean NLL in nats, accumulated in float64) and scored (targets scored).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin  # noqa: E402



read_shard = twin.read_shard


def load_checkpoint(path, cfg):
    tensors, _ = twin.load(path)
    params = {}
    for name, shape, _, _ in twin.param_table(cfg):
        if name not in tensors:
            raise ValueError(f"{path}: missing parameter {name}")
        t = tensors[name]
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{path}: {name} has shape {list(t.shape)}, expected {list(shape)}")
        params[name] = t.to(torch.float32)
    extra = sorted(set(tensors) - set(params))
    if extra:
        print(f"note: ignoring {len(extra)} tensors not in the parameter table "
              f"(first: {extra[0]})", file=sys.stderr)
    return params


class Scorer:
    def __init__(self, params, cfg, active, dtype):
        self.params = {k: v.to(dtype) for k, v in params.items()}
        self.cfg, self.active, self.dtype = cfg, active, dtype
        self.nll_sum = 0.0  # float64 accumulation
        self.count = 0

    def score(self, inputs, targets, first):
        """inputs/targets [W, wl]; scores positions first.. of every row."""
        with torch.no_grad():
            logits = twin.forward(self.params, self.cfg, inputs, self.active, self.dtype)
            nll = twin.token_nll(logits, targets)[:, first:]
        self.nll_sum += float(nll.to(torch.float64).sum().item())
        self.count += nll.numel()


def eval_nonoverlap(tokens, T, scorer, batch):
    n_win = (len(tokens) - 1) // T
    for w0 in range(0, n_win, batch):
        ws = np.arange(w0, min(n_win, w0 + batch)) * T
        idx = ws[:, None] + np.arange(T)[None, :]
        scorer.score(torch.from_numpy(tokens[idx]), torch.from_numpy(tokens[idx + 1]), 0)


def sliding_windows(N, T, S):
    """(ws, wl, first_scored) for every window that scores something; targets
    ws+first .. ws+wl-1 (0-based target indices) are scored by that window."""
    out = []
    scored_to = 0  # targets [0, scored_to) are scored
    ws = 0
    while ws < N and scored_to < N:
        wl = min(T, N - ws)
        first = max(0, scored_to - ws)
        if first < wl:
            out.append((ws, wl, first))
            scored_to = ws + wl
        ws += S
    return out


def eval_sliding(tokens, T, S, scorer, batch):
    N = len(tokens) - 1
    windows = sliding_windows(N, T, S)
    groups = {}
    for ws, wl, first in windows:  # batch windows with equal length and first position
        groups.setdefault((wl, first), []).append(ws)
    for (wl, first), starts in groups.items():
        for b0 in range(0, len(starts), batch):
            ws = np.asarray(starts[b0:b0 + batch])
            idx = ws[:, None] + np.arange(wl)[None, :]
            scorer.score(torch.from_numpy(tokens[idx]), torch.from_numpy(tokens[idx + 1]), first)
    return windows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("shard", nargs="?")
    ap.add_argument("--mode", choices=["nonoverlap", "sliding"], default="sliding")
    ap.add_argument("--stride", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=0, help="use the first N tokens (0: all)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--batch", type=int, default=8, help="windows per forward")
    ap.add_argument("--recurrence", choices=["auto", "on", "off"], default="auto",
                    help="depth recurrence during eval; auto: on iff virtual_layers is set")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--write-init", metavar="OUT", help="write the twin's init_params and exit")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--init", choices=["init", "random"], default="init",
                    help="with --write-init: the table's init (default), or the goldens' "
                         "random values (non-zero projections, so the eval is non-trivial)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = twin.load_config(args.config)

    if args.write_init:
        if args.init == "init":
            params = twin.init_params(cfg, args.seed)
        else:
            from make_golden import random_params
            params = random_params(cfg, np.random.RandomState(args.seed))
        twin.save(args.write_init, params, {
            "generator": f"tests/reference/eval_checkpoint.py --write-init --init {args.init}",
            "seed": str(args.seed),
            "config": json.dumps({"model": cfg}),
        })
        print(json.dumps({"written": args.write_init, "tensors": len(params),
                          "elements": sum(p.numel() for p in params.values())}))
        return 0
    if not args.checkpoint or not args.shard:
        ap.error("CHECKPOINT and SHARD are required unless --write-init is given")

    T = cfg["seq_len"]
    active = {"auto": bool(cfg["recurrence"]["virtual_layers"]), "on": True, "off": False}[args.recurrence]
    dtype = torch.float32 if args.dtype == "float32" else torch.float64
    tokens = read_shard(args.shard)
    if args.max_tokens > 0:
        tokens = tokens[:args.max_tokens]
    if len(tokens) < 2:
        raise ValueError("need at least 2 tokens")
    if tokens.max() >= cfg["vocab_size"]:
        raise ValueError(f"token id {int(tokens.max())} >= vocab_size {cfg['vocab_size']}")
    scorer = Scorer(load_checkpoint(args.checkpoint, cfg), cfg, active, dtype)
    result = {"mode": args.mode, "tokens": int(len(tokens)), "seq_len": T}
    if args.mode == "nonoverlap":
        eval_nonoverlap(tokens, T, scorer, args.batch)
    else:
        if not 0 < args.stride <= T:
            ap.error("--stride must be in 1..seq_len")
        windows = eval_sliding(tokens, T, args.stride, scorer, args.batch)
        result["stride"] = args.stride
        result["windows"] = len(windows)
        if scorer.count != len(tokens) - 1:
            raise AssertionError("sliding eval did not score every target exactly once")
    result["val_loss"] = scorer.nll_sum / scorer.count
    result["scored"] = scorer.count
    result["dtype"] = args.dtype
    result["recurrence_active"] = active
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
