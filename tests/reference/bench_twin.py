#!/usr/bin/env python3
"""Training-step throughput of the PyTorch twin (float32 forward + backward), as a yardstick
for pgolf's CPU backend.

    /usr/bin/python3 tests/reference/bench_twin.py CONFIG.json [--threads N] [--steps 10] [--batch B]

CONFIG is a resolved config (`pgolf inspect config FILE`). Sequences of model.seq_len random
tokens; default batch = 8192 // seq_len sequences. Prints one JSON object with tokens/s over
the timed steps (after 2 untimed warm-up steps).
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=0, help="sequences per step (0: 8192 // seq_len)")
    ap.add_argument("--recurrence", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = twin.load_config(args.config)
    T = cfg["seq_len"]
    batch = args.batch or max(1, 8192 // T)
    active = {"auto": bool(cfg["recurrence"]["virtual_layers"]), "on": True, "off": False}[args.recurrence]
    torch.manual_seed(args.seed)
    params = {k: v.requires_grad_(True) for k, v in twin.init_params(cfg, args.seed).items()}
    # The init zeroes every output projection; random values give a representative backward.
    with torch.no_grad():
        for p in params.values():
            p.add_(0.02 * torch.randn_like(p))
    V = cfg["vocab_size"]

    def step():
        ids = torch.randint(0, V, (batch, T))
        targets = torch.randint(0, V, (batch, T))
        for p in params.values():
            p.grad = None
        lo = twin.loss(twin.forward(params, cfg, ids, active, torch.float32), targets)
        lo.backward()
        return lo.item()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    total = sum(times)
    tokens = batch * T * args.steps
    print(json.dumps({
        "config_name": os.path.basename(args.config),
        "threads": torch.get_num_threads(),
        "batch": batch,
        "seq_len": T,
        "tokens_per_step": batch * T,
        "steps": args.steps,
        "seconds": total,
        "step_ms_mean": 1000 * total / args.steps,
        "step_ms_min": 1000 * min(times),
        "tokens_per_s": tokens / total,
        "tokens_per_s_best_step": batch * T / min(times),
        "torch": torch.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
