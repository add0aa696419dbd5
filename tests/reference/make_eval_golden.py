#!/usr/bin/env python3
"""Regenerate tests/reference/golden/eval_v1.safetensors: per-target NLLs of the eval twin
(eval_ttt_slot.py, docs/eval.md) for sliding, TTT and SLOT cases, after self-checks.

    /usr/bin/python3 tests/reference/make_eval_golden.py [--config RESOLVED.json] \
        [--pgolf build/pgolf] [--out tests/reference/golden/eval_v1.safetensors]

Without --config, the config is `tests/reference/golden/eval_ttt_slot.json` resolved by
running `PGOLF inspect config` (default `build/pgolf`); with --config, a file already
resolved that way. The checkpoint is `golden/interchange_twin_v1.safetensors`. The output
is deterministic (float32, one thread): rerunning gives the same bytes.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import twin  # noqa: E402
import eval_ttt_slot as ets  # noqa: E402
import eval_checkpoint  # noqa: E402

CONFIG = "tests/reference/golden/eval_ttt_slot.json"
CHECKPOINT = "tests/reference/golden/interchange_twin_v1.safetensors"
OUT = "tests/reference/golden/eval_v1.safetensors"
N_TARGETS = 1500


def case(ttt, variant, placement="before_norm"):
    return {"ttt": {"enabled": ttt}, "slot": {"variant": variant, "placement": placement}}


CASES = {
    "sliding": case(False, "none"),
    "ttt": case(True, "none"),
    "slot_causal_before": case(False, "causal", "before_norm"),
    "slot_causal_after": case(False, "causal", "after_norm"),
    "ttt_slot_causal": case(True, "causal", "before_norm"),
    "slot_standard": case(False, "standard", "before_norm"),
    "slot_causal_shared": case(False, "causal_shared", "before_norm"),
}


def resolve_config(args):
    if args.config:
        with open(args.config, "r", encoding="utf-8") as f:
            return json.load(f)
    out = subprocess.run([args.pgolf, "inspect", "config", os.path.join(REPO, CONFIG)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def merge(a, b):
    return ets._deep_update(a, b)


def max_abs(a, b):
    return float(np.max(np.abs(a - b)))


def bitwise_equal(a, b):
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="resolved config (default: resolve "
                    f"{CONFIG} with PGOLF inspect config)")
    ap.add_argument("--pgolf", default=os.path.join(REPO, "build", "pgolf"))
    ap.add_argument("--out", default=os.path.join(REPO, OUT))
    args = ap.parse_args()
    torch.set_num_threads(1)

    full = resolve_config(args)
    cfg = twin.load_config(full)
    T = cfg["seq_len"]
    rec = bool(cfg["recurrence"]["virtual_layers"])
    base_ev = ets.eval_settings(full)
    tokens = ets.load_val_tokens(full, T, cfg["vocab_size"])
    N = len(tokens) - 1
    assert N == N_TARGETS, f"expected {N_TARGETS} targets, got {N}"
    params = ets.load_checkpoint(os.path.join(REPO, CHECKPOINT), cfg)
    S, B = int(base_ev["stride"]), int(base_ev["batch_windows"])
    checks = {}

    def run(overrides, ev=None):
        ev = ets.eval_settings(full, overrides) if ev is None else ev
        tw = ets.EvalTwin(cfg, params, ev)
        res, nll = tw.run(tokens)
        return res, nll, tw

    # -- the cases --------------------------------------------------------------------
    results, nlls, twins = {}, {}, {}
    for name, over in CASES.items():
        res, nll, tw = run(over)
        assert res["scored"] == N and res["targets"] == N, (name, res)
        assert np.isfinite(nll).all(), f"{name}: unscored or non-finite NLL"
        results[name], nlls[name], twins[name] = res, nll, tw
    sl = nlls["sliding"]

    # -- self-checks ------------------------------------------------------------------
    # 1. the plan equals eval_checkpoint.py's, and the sliding loss equals its result
    plan = ets.window_plan(N, T, S)
    assert plan == eval_checkpoint.sliding_windows(N, T, S), "window plan differs"
    scorer = eval_checkpoint.Scorer(params, cfg, rec, torch.float32)
    eval_checkpoint.eval_sliding(tokens, T, S, scorer, B)
    assert scorer.count == N
    ref = scorer.nll_sum / scorer.count
    rel = abs(results["sliding"]["val_loss"] - ref) / abs(ref)
    assert rel <= 1e-6, f"sliding {results['sliding']['val_loss']} vs eval_checkpoint {ref}"
    checks["sliding_vs_eval_checkpoint_rel"] = rel

    # 2. the head of eval_ttt_slot equals twin.forward's logits bit for bit (first batch)
    tw = twins["sliding"]
    wins = [plan[i] for i in tw.batches[0]]
    idx = np.asarray([w[0] for w in wins])[:, None] + np.arange(wins[0][1])[None, :]
    ids = torch.from_numpy(tokens[idx])
    with torch.no_grad():
        lg = twin.forward(params, cfg, ids, rec, torch.float32)
        x = twin.forward(params, cfg, ids, rec, torch.float32, return_hidden=True)
        assert torch.equal(tw.head(x, None, True), lg), "head differs from twin.forward"
        zero = torch.zeros(len(wins), x.shape[-1])
        assert torch.equal(tw.head(x, zero, True), lg), "head(H + 0) differs (before_norm)"
        assert torch.equal(tw.head(twin.rms(x), zero, False), lg), "head differs (after_norm)"

    # 3. SLOT with steps = 0 equals sliding (every variant and placement)
    worst = 0.0
    for variant in ("causal", "standard", "causal_shared"):
        for placement in ets.PLACEMENTS:
            over = merge(case(False, variant, placement), {"slot": {"steps": 0}})
            _, nll0, _ = run(over)
            worst = max(worst, max_abs(nll0, sl))
    assert worst <= 1e-6, f"SLOT steps=0 differs from sliding by {worst}"
    checks["slot_steps0_max_abs_vs_sliding"] = worst

    # 4. causal: the first window (s = 0, empty mask, delta stays 0) equals sliding bit for bit
    st, wl, s = plan[0]
    for name in ("slot_causal_before", "slot_causal_after", "ttt_slot_causal"):
        assert s == 0
        assert bitwise_equal(nlls[name][st:st + wl], sl[st:st + wl]), \
            f"{name}: first window differs from sliding"
    checks["causal_first_window_bitwise"] = True

    # 5. TTT: the windows of chunk 0 equal sliding bit for bit (no update yet)
    C = int(base_ev["ttt"]["chunk_tokens"])
    for name in ("ttt",):
        tw = twins[name]
        n0 = 0
        for i, (st, wl, s) in enumerate(plan):
            if tw.chunk_of[i] == 0:
                assert bitwise_equal(nlls[name][st + s:st + wl], sl[st + s:st + wl]), \
                    f"{name}: chunk 0 window {i} differs from sliding"
                n0 += 1
        checks["ttt_chunk0_windows_bitwise"] = n0
    # ttt+slot:causal scores chunk 0 like slot:causal (same weights, same delta fits)
    tw = twins["ttt_slot_causal"]
    for i, (st, wl, s) in enumerate(plan):
        if tw.chunk_of[i] == 0:
            a = nlls["ttt_slot_causal"][st + s:st + wl]
            b = nlls["slot_causal_before"][st + s:st + wl]
            assert max_abs(a, b) <= 1e-6, f"ttt_slot_causal chunk 0 window {i} differs"

    # 6. TTT with lr = 0 changes nothing: bit for bit with one window per batch (so that
    #    the chunk split does not change the batches), within float32 rounding otherwise
    #    (the BLAS results of a row depend on the batch's shape)
    one = {"batch_windows": 1}
    _, a, _ = run(merge(merge(case(True, "none"), {"ttt": {"lr": 0.0}}), one))
    _, b, _ = run(merge(case(False, "none"), one))
    assert bitwise_equal(a, b), "TTT lr=0 differs from sliding (batch_windows 1)"
    _, nll_lr0, _ = run(merge(case(True, "none"), {"ttt": {"lr": 0.0}}))
    d = max_abs(nll_lr0, sl)
    assert d <= 1e-5, f"TTT lr=0 differs from sliding by {d}"
    checks["ttt_lr0_batch1_bitwise"] = True
    checks["ttt_lr0_max_abs_vs_sliding"] = d
    checks["sliding_batch1_max_abs_vs_sliding"] = max_abs(b, sl)

    # 7. causal delta rows are independent: one window per batch gives the same NLLs
    _, nll_b1, _ = run(merge(CASES["slot_causal_before"], {"batch_windows": 1}))
    d = max_abs(nll_b1, nlls["slot_causal_before"])
    assert d <= 1e-4, f"causal SLOT depends on the batch ({d})"
    checks["causal_batch1_max_abs"] = d
    # ... whereas the shared variants do depend on it (informational)
    _, nll_sh1, _ = run(merge(CASES["slot_causal_shared"], {"batch_windows": 1}))
    checks["causal_shared_batch1_max_abs (info)"] = max_abs(nll_sh1, nlls["slot_causal_shared"])

    # 8. adamw_step equals torch.optim.AdamW bit for bit
    g0 = torch.Generator().manual_seed(5)
    p_ref = torch.randn(3, 7, generator=g0)
    grads = [torch.randn(3, 7, generator=g0) for _ in range(4)]
    sc = base_ev["slot"]
    kw = dict(lr=float(sc["lr"]), betas=(float(sc["beta1"]), float(sc["beta2"])),
              eps=float(sc["eps"]), weight_decay=float(sc["weight_decay"]))
    p_t = p_ref.clone().requires_grad_(True)
    opt = torch.optim.AdamW([p_t], foreach=False, **kw)
    p_m, m, v = p_ref.clone(), torch.zeros(3, 7), torch.zeros(3, 7)
    for t, g in enumerate(grads, 1):
        p_t.grad = g.clone()
        opt.step()
        ets.adamw_step(p_m, g, m, v, t, kw["lr"], kw["betas"][0], kw["betas"][1], kw["eps"],
                       kw["weight_decay"])
    assert torch.equal(p_t.detach(), p_m), "adamw_step differs from torch.optim.AdamW"
    # ... and a zero row with zero gradients stays exactly zero
    z = torch.zeros(2, 4)
    zm, zv = torch.zeros(2, 4), torch.zeros(2, 4)
    for t in range(1, 5):
        ets.adamw_step(z, torch.zeros(2, 4), zm, zv, t, kw["lr"], kw["betas"][0],
                       kw["betas"][1], kw["eps"], kw["weight_decay"])
    assert bool((z == 0).all())
    checks["adamw_vs_torch_bitwise"] = True

    # -- write ------------------------------------------------------------------------
    tensors = {f"{name}.nll": torch.from_numpy(nlls[name].copy()) for name in CASES}
    metadata = {
        "golden_version": "1",
        "generator": "tests/reference/make_eval_golden.py",
        "config": json.dumps({
            "data": {"val_max_tokens": full["data"]["val_max_tokens"],
                     "trim_val": full["data"]["trim_val"]},
            "eval": base_ev, "model": cfg}),
        "checkpoint": CHECKPOINT,
        "targets": str(N),
        "recurrence_active": "true" if rec else "false",
        "cases": json.dumps(CASES),
    }
    for name in CASES:
        metadata[f"{name}.val_loss"] = repr(results[name]["val_loss"])
        metadata[f"{name}.mode"] = results[name]["mode"]
    twin.save(args.out, tensors, metadata)

    # re-read and compare
    back, meta = twin.load(args.out)
    for name in CASES:
        assert bitwise_equal(back[f"{name}.nll"].numpy(), nlls[name])
        assert float(meta[f"{name}.val_loss"]) == results[name]["val_loss"]

    print(f"{args.out}: {os.path.getsize(args.out)} bytes, {N} targets, "
          f"{results['sliding']['windows']} windows")
    for name in CASES:
        r = results[name]
        print(f"  {name:20s} {r['mode']:26s} val_loss {r['val_loss']!r}  "
              f"max|nll - sliding| {max_abs(nlls[name], sl):.3e}  "
              f"batches {r['batches']} chunks {r['chunks']} ttt_steps {r['ttt_steps']}")
    print("  self-checks: " + json.dumps(checks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
