#!/usr/bin/env python3
"""Full training-step throughput of the PyTorch twin (float32): forward + backward of every
micro-step, clipping, the optimizer updates (Muon / AdamW), EMA and SWA bookkeeping, as a
yardstick for pgolf's CPU trainer.

    /usr/bin/python3 tests/reference/bench_twin_train.py CONFIG.json [--threads N] [--steps K]
        [--warmup 2] [--recurrence auto|on|off] [--qat] [--seed S]

CONFIG is a resolved config (`pgolf inspect config FILE`). One step processes
train.batch_tokens tokens as grad_accum_steps micro-steps (0 meaning 8) of random tokens;
the lr scale is held at 1 (so a wall-clock warmdown config also works). Parameters are the
twin's init plus 0.02 N(0, 1) noise (the init zeroes the output projections). Prints one
JSON object with tokens/s over the K timed steps (after the untimed warm-up steps).
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin  # noqa: E402
import twin_train as tt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--recurrence", choices=["auto", "on", "off"], default="auto",
                    help="auto: on iff model.recurrence.virtual_layers is non-empty")
    ap.add_argument("--qat", action="store_true", help="fake-quantise the qat.scope matrices")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    full = tt.load_full_config(args.config)
    cfg = twin.load_config(full)
    torch.manual_seed(args.seed)
    params = twin.init_params(cfg, args.seed)
    with torch.no_grad():
        for p in params.values():
            p.add_(0.02 * torch.randn_like(p))
    trainer = tt.Trainer(full, params, world_size=1, lr_scale_fn=lambda s: 1.0)
    vl = bool(cfg["recurrence"]["virtual_layers"])
    trainer.has_recurrence = {"auto": vl, "on": True, "off": False}[args.recurrence]
    trainer.rec_start = 0
    trainer.qat_on = bool(args.qat)
    if args.qat and not trainer.qat_scope:
        trainer.qat_scope = tt.qat_names(trainer.names, full["train"]["qat"]["scope"])
    trainer.qat_enabled_cfg = False  # keep qat_on as chosen above
    V, T, A, n_local = cfg["vocab_size"], trainer.T, trainer.A, trainer.n_local
    rows = n_local // T

    def batches():
        return [[(torch.randint(0, V, (rows, T)), torch.randint(0, V, (rows, T)))]
                for _ in range(A)]

    for _ in range(args.warmup):
        trainer.step(batches())
    times = []
    losses = []
    for _ in range(args.steps):
        b = batches()
        t0 = time.perf_counter()
        rec = trainer.step(b)
        times.append(time.perf_counter() - t0)
        losses.append(rec["loss"])
    total = sum(times)
    tokens_per_step = A * n_local
    print(json.dumps({
        "config_name": full.get("name", os.path.basename(args.config)),
        "threads": torch.get_num_threads(),
        "seq_len": T,
        "grad_accum_steps": A,
        "sequences_per_micro_step": rows,
        "tokens_per_step": tokens_per_step,
        "recurrence": trainer.has_recurrence,
        "qat": trainer.qat_on,
        "steps": args.steps,
        "seconds": total,
        "step_ms_mean": 1000 * total / args.steps,
        "step_ms_min": 1000 * min(times),
        "tokens_per_s": tokens_per_step * args.steps / total,
        "tokens_per_s_best_step": tokens_per_step / min(times),
        "last_loss": losses[-1],
        "torch": torch.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
