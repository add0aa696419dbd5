#!/usr/bin/env python3
"""PyTorch twin of pgolf's evaluation modes (docs/eval.md): sliding / non-overlapping
windows, score-first TTT and SLOT (`standard`, `causal_shared`, `causal`; placements
`before_norm` / `after_norm`), written from docs/eval.md alone. Float32, one thread.

    /usr/bin/python3 tests/reference/eval_ttt_slot.py CONFIG.json CHECKPOINT.safetensors \
        [--ttt on|off] [--slot none|standard|causal_shared|causal] \
        [--placement before_norm|after_norm] [--nll-out FILE.f64] [--threads N]

CONFIG is a resolved config (`./build/pgolf inspect config X.json > /tmp/x.json`); the
sections `data`, `model` and `eval` are read. The val tokens are the shards matching
`data.val_files` (sorted, concatenated), the first `data.val_max_tokens` when > 0, trimmed
to `((n-1)//T)*T+1` when `data.trim_val`. Every eval hyperparameter comes from the config's
`eval` section; the flags override `eval.ttt.enabled`, `eval.slot.variant` and
`eval.slot.placement`. Prints one JSON object (mode, compliant, val_loss, scored, targets,
windows, chunks, seconds, tokens_per_s). `--nll-out` writes the float64 NLL of every
target (little endian, NaN where unscored).

Module use: `run_eval(cfg, params, tokens, ev)` with `ev = eval_settings(full_cfg,
overrides)` returns (result dict, nll float64 numpy array [N]).
"""
import argparse
import copy
import glob as globmod
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin  # noqa: E402
from eval_checkpoint import load_checkpoint  # noqa: E402,F401  (also used by make_eval_golden)

CLIP_EPS = 1e-6
SLOT_VARIANTS = ("none", "standard", "causal_shared", "causal")
PLACEMENTS = ("before_norm", "after_norm")


# --------------------------------------------------------------------------------------
# Config and data
# --------------------------------------------------------------------------------------

def _deep_update(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def eval_settings(full_cfg, overrides=None):
    """The resolved `eval` section with `overrides` (a nested dict, e.g.
    {"ttt": {"enabled": True}, "slot": {"variant": "causal"}}) merged in, validated."""
    raw = twin.read_config_json(full_cfg)
    if "eval" not in raw:
        raise ValueError("config has no eval section (use a resolved config)")
    ev = _deep_update(raw["eval"], overrides or {})
    for key in ("sliding", "stride", "batch_windows", "tail", "ttt", "slot"):
        if key not in ev:
            raise ValueError(f"eval.{key} missing (use a resolved config)")
    if ev["tail"] not in ("exactly_once", "record_rescore"):
        raise ValueError(f"unknown eval.tail {ev['tail']!r}")
    if ev["slot"]["variant"] not in SLOT_VARIANTS:
        raise ValueError(f"unknown eval.slot.variant {ev['slot']['variant']!r}")
    if ev["slot"]["placement"] not in PLACEMENTS:
        raise ValueError(f"unknown eval.slot.placement {ev['slot']['placement']!r}")
    if int(ev["batch_windows"]) < 1:
        raise ValueError("eval.batch_windows must be >= 1")
    return ev


def load_val_tokens(full_cfg, T, vocab_size=None):
    """docs: data.val_files (sorted glob, concatenated), first val_max_tokens (> 0), then
    trimmed to ((n-1)//T)*T+1 tokens iff data.trim_val."""
    raw = twin.read_config_json(full_cfg)
    data = raw["data"]
    files = sorted(globmod.glob(data["val_files"]))
    if not files:
        raise ValueError(f"no val shards match {data['val_files']!r}")
    tokens = np.concatenate([twin.read_shard(p) for p in files])
    m = int(data.get("val_max_tokens", 0))
    if m > 0:
        tokens = tokens[:m]
    if bool(data.get("trim_val", False)):
        n = len(tokens)
        tokens = tokens[:((n - 1) // T) * T + 1]
    if len(tokens) < 2:
        raise ValueError("need at least 2 val tokens")
    if vocab_size is not None and int(tokens.max()) >= vocab_size:
        raise ValueError(f"token id {int(tokens.max())} >= vocab_size {vocab_size}")
    return tokens


# --------------------------------------------------------------------------------------
# Window plan, chunks, batches (docs/eval.md "Window plans", "Batches")
# --------------------------------------------------------------------------------------

def window_plan(N, T, S, sliding=True, tail="exactly_once"):
    """List of windows (start, wl, s) in plan order."""
    out = []
    if not sliding:
        k = 0
        while k * T < N:
            out.append((k * T, min(T, N - k * T), 0))
            k += 1
        return out
    if not 0 < S <= T:
        raise ValueError(f"eval.stride {S} must be in 1..seq_len ({T})")
    scored_until = 0
    ws = 0
    while ws < N:
        wl = min(T, N - ws)
        end = ws + wl
        if tail == "record_rescore":
            out.append((ws, wl, 0 if not out else max(0, wl - S)))
        elif end > scored_until:
            out.append((ws, wl, max(0, scored_until - ws)))
            scored_until = end
        ws += S
    return out


def make_batches(windows, B, chunk_of=None):
    """Consecutive windows of equal length (and equal chunk when chunk_of is given), at
    most B per batch; a list of lists of window indices."""
    batches = []
    cur = []
    for i, (start, wl, s) in enumerate(windows):
        if cur:
            p = windows[cur[-1]]
            same = p[1] == wl and (chunk_of is None or chunk_of[cur[-1]] == chunk_of[i])
            if not same or len(cur) == B:
                batches.append(cur)
                cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def slot_mask_end(variant, wl, s, S):
    """Fit mask of a window = positions [0, end)."""
    if variant == "standard":
        return wl - 1
    if variant in ("causal_shared", "causal"):
        return s  # the window's context (already scored); the variants differ only in sharing
    raise ValueError(variant)


def mode_label(ev):
    label = "sliding" if ev["sliding"] else "nonoverlap"
    if ev["ttt"]["enabled"]:
        label += "+ttt"
    if ev["slot"]["variant"] != "none":
        label += "+slot:" + ev["slot"]["variant"]
    compliant = not ((ev["sliding"] and ev["tail"] == "record_rescore")
                     or ev["slot"]["variant"] in ("standard", "causal_shared"))
    return label, compliant


def f32(x):
    """A Python float rounded to float32 (returned as a Python float)."""
    return float(np.float32(x))


def adamw_step(p, g, m, v, t, lr, beta1, beta2, eps, wd):
    """torch.optim.AdamW (single-tensor path of torch 1.13, amsgrad off), step t (1-based),
    in place on p, m, v (the same ops as twin_train.adamw_update)."""
    p.mul_(1 - lr * wd)
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    bc1 = 1 - beta1 ** t
    bc2 = 1 - beta2 ** t
    denom = (v.sqrt() / math.sqrt(bc2)).add_(eps)
    p.addcdiv_(m, denom, value=-(lr / bc1))


# --------------------------------------------------------------------------------------
# The evaluator
# --------------------------------------------------------------------------------------

class EvalTwin:
    def __init__(self, cfg, params, ev, recurrence=None):
        self.cfg = cfg
        self.ev = ev
        self.T = cfg["seq_len"]
        self.rec = bool(cfg["recurrence"]["virtual_layers"]) if recurrence is None else recurrence
        self.names = [n for n, _, _, _ in twin.param_table(cfg)]
        self.params = {n: params[n].detach().to(torch.float32).clone() for n in self.names}
        self.slot = ev["slot"]
        self.variant = self.slot["variant"]
        self.placement = self.slot["placement"]
        self.S = int(ev["stride"])

    # -- head -------------------------------------------------------------------------

    def head_weight(self):
        return self.params["tok_emb.weight" if self.cfg["tie_embeddings"] else "lm_head.weight"]

    def head(self, H, delta, norm):
        """H [b, wl, d]; delta None or [b or 1, d]; logits [b, wl, V]. With norm, the same
        ops as twin.forward's last lines (rms, @ W^T, softcap)."""
        z = H if delta is None else H + delta[:, None, :]
        h = twin.rms(z) if norm else z
        logits = h @ self.head_weight().t()
        c = self.cfg["logit_softcap"]
        if c > 0:
            logits = c * torch.tanh(logits / c)
        return logits

    # -- scoring one batch --------------------------------------------------------------

    def score_batch(self, tokens, wins):
        """wins: list of (start, wl, s) of equal wl. Returns float32 NLL [b, wl]."""
        wl = wins[0][1]
        starts = np.asarray([w[0] for w in wins], dtype=np.int64)
        idx = starts[:, None] + np.arange(wl)[None, :]
        ids = torch.from_numpy(tokens[idx])
        tgt = torch.from_numpy(tokens[idx + 1])
        with torch.no_grad():
            x = twin.forward(self.params, self.cfg, ids, self.rec, torch.float32,
                             return_hidden=True)
        if self.variant == "none":
            with torch.no_grad():
                return twin.token_nll(self.head(x, None, True), tgt)
        before = self.placement == "before_norm"
        with torch.no_grad():
            H = (x if before else twin.rms(x)).detach()
        b, d = len(wins), H.shape[-1]
        shared = self.variant != "causal"
        delta = torch.zeros(1 if shared else b, d, dtype=torch.float32)
        m = torch.zeros_like(delta)
        v = torch.zeros_like(delta)
        ends = [slot_mask_end(self.variant, wl, s, self.S) for (_, _, s) in wins]
        count = sum(ends)
        steps = int(self.slot["steps"])
        lr, b1, b2 = float(self.slot["lr"]), float(self.slot["beta1"]), float(self.slot["beta2"])
        eps, wd = float(self.slot["eps"]), float(self.slot["weight_decay"])
        empty_rows = [] if shared else [w for w, e in enumerate(ends) if e == 0]
        if count > 0:
            for t in range(1, steps + 1):
                dl = delta.clone().requires_grad_(True)
                nll = twin.token_nll(self.head(H, dl, before), tgt)
                if shared:
                    L = torch.cat([nll[w, :e] for w, e in enumerate(ends) if e > 0]).mean()
                else:
                    L = None
                    for w, e in enumerate(ends):
                        if e > 0:
                            lw = nll[w, :e].mean()
                            L = lw if L is None else L + lw
                (g,) = torch.autograd.grad(L, dl)
                with torch.no_grad():
                    adamw_step(delta, g, m, v, t, lr, b1, b2, eps, wd)
            if empty_rows:  # docs item 6: skipped rows stay exactly zero (they do anyway)
                assert bool((delta[empty_rows] == 0).all()), "empty-mask δ row moved"
        with torch.no_grad():
            return twin.token_nll(self.head(H, delta, before), tgt)

    # -- TTT training of one chunk ------------------------------------------------------

    def ttt_train(self, tokens, c, lr_c, N, bufs):
        ttt = self.ev["ttt"]
        C, T = int(ttt["chunk_tokens"]), self.T
        len_c = min(C, N - c * C)
        n_seq = len_c // T
        bs = int(ttt["batch_seqs"])
        mu = f32(float(ttt["momentum"]))
        clip = float(ttt["grad_clip"])
        fb = int(ttt["freeze_blocks"])
        frozen = {n for n in self.names
                  if any(n.startswith(f"blocks.{i}.") for i in range(fb))}
        lr32 = f32(lr_c)
        steps = 0
        for _epoch in range(int(ttt["epochs"])):
            for b in range(0, n_seq, bs):
                ks = np.arange(b, min(b + bs, n_seq), dtype=np.int64)
                idx = c * C + ks[:, None] * T + np.arange(T)[None, :]
                ids = torch.from_numpy(tokens[idx])
                tgt = torch.from_numpy(tokens[idx + 1])
                P = {n: p.detach().requires_grad_(True) for n, p in self.params.items()}
                lo = twin.loss(twin.forward(P, self.cfg, ids, self.rec, torch.float32), tgt)
                lo.backward()
                grads = {}
                for n in self.names:
                    g = P[n].grad
                    if n in frozen or g is None:
                        g = torch.zeros_like(self.params[n])
                    grads[n] = g.detach()
                total = 0.0
                for n in self.names:
                    total += float(grads[n].double().pow(2).sum().item())
                norm = math.sqrt(total)
                if clip > 0:
                    coef = f32(min(1.0, clip / (norm + CLIP_EPS)))
                    if coef < 1.0:
                        for n in self.names:
                            grads[n] = grads[n] * coef
                with torch.no_grad():
                    for n in self.names:
                        if n in frozen:
                            continue
                        buf = bufs[n]
                        buf.mul_(mu).add_(grads[n])          # buf = fl(fl(mu buf) + g)
                        self.params[n].sub_(buf * lr32)      # p = fl(p - fl(lr_c buf))
                steps += 1
        return steps

    # -- the whole eval -----------------------------------------------------------------

    def run(self, tokens):
        ev = self.ev
        N = len(tokens) - 1
        T, S = self.T, self.S
        windows = window_plan(N, T, S, bool(ev["sliding"]), ev["tail"])
        B = int(ev["batch_windows"])
        ttt_on = bool(ev["ttt"]["enabled"])
        nll_out = np.full(N, np.nan, dtype=np.float64)
        times_scored = np.zeros(N, dtype=np.int64)
        all_values = []
        t0 = time.perf_counter()
        if ttt_on:
            C = int(ev["ttt"]["chunk_tokens"])
            if C < 1:
                raise ValueError("eval.ttt.chunk_tokens must be >= 1")
            n_chunks = (N + C - 1) // C
            chunk_of = [(st + s) // C for (st, wl, s) in windows]
            batches = make_batches(windows, B, chunk_of)
        else:
            n_chunks = 0
            chunk_of = None
            batches = make_batches(windows, B)
        self.batches = batches
        self.chunk_of = chunk_of

        def score(batch):
            wins = [windows[i] for i in batch]
            nll = self.score_batch(tokens, wins).to(torch.float64).numpy()
            for r, (st, wl, s) in enumerate(wins):
                vals = nll[r, s:wl]
                nll_out[st + s: st + wl] = vals
                times_scored[st + s: st + wl] += 1
                all_values.append(vals)

        ttt_steps = 0
        if not ttt_on:
            for batch in batches:
                score(batch)
        else:
            bufs = {n: torch.zeros_like(p) for n, p in self.params.items()}
            bi = 0
            lr = float(ev["ttt"]["lr"])
            for c in range(n_chunks):
                before = {n: p.clone() for n, p in self.params.items()}
                while bi < len(batches) and chunk_of[batches[bi][0]] == c:
                    score(batches[bi])
                    bi += 1
                for n, p in self.params.items():
                    if not torch.equal(before[n], p):
                        raise AssertionError(f"weights changed during the score phase ({n})")
                if c < n_chunks - 1:
                    lr_c = lr * 0.5 * (1.0 + math.cos(math.pi * c / max(n_chunks - 1, 1)))
                    ttt_steps += self.ttt_train(tokens, c, lr_c, N, bufs)
            if bi != len(batches):
                raise AssertionError("windows left unscored after the last chunk")
        seconds = time.perf_counter() - t0
        scored = int(times_scored.sum())
        if ev["tail"] == "exactly_once" and not bool((times_scored == 1).all()):
            raise AssertionError("a target was not scored exactly once")
        flat = np.concatenate(all_values) if all_values else np.zeros(0)
        label, compliant = mode_label(ev)
        result = {
            "mode": label,
            "compliant": compliant,
            "val_loss": math.fsum(flat.tolist()) / scored if scored else float("nan"),
            "scored": scored,
            "targets": N,
            "windows": len(windows),
            "batches": len(batches),
            "chunks": n_chunks,
            "ttt_steps": ttt_steps,
            "recurrence_active": self.rec,
            "seconds": seconds,
            "tokens_per_s": scored / seconds if seconds > 0 else float("inf"),
        }
        return result, nll_out


def run_eval(cfg, params, tokens, ev, recurrence=None):
    """(result, nll float64 [N]) for model section cfg, float32 params, int64 tokens."""
    return EvalTwin(cfg, params, ev, recurrence).run(tokens)


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="resolved config JSON (pgolf inspect config FILE)")
    ap.add_argument("checkpoint", help="safetensors checkpoint with every parameter")
    ap.add_argument("--ttt", choices=["on", "off"], default=None, help="override eval.ttt.enabled")
    ap.add_argument("--slot", choices=list(SLOT_VARIANTS), default=None,
                    help="override eval.slot.variant")
    ap.add_argument("--placement", choices=list(PLACEMENTS), default=None,
                    help="override eval.slot.placement")
    ap.add_argument("--nll-out", default=None, help="write float64 LE NLL per target (NaN: unscored)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    full = twin.read_config_json(args.config)
    cfg = twin.load_config(full)
    over = {"ttt": {}, "slot": {}}
    if args.ttt is not None:
        over["ttt"]["enabled"] = args.ttt == "on"
    if args.slot is not None:
        over["slot"]["variant"] = args.slot
    if args.placement is not None:
        over["slot"]["placement"] = args.placement
    ev = eval_settings(full, over)
    tokens = load_val_tokens(full, cfg["seq_len"], cfg["vocab_size"])
    params = load_checkpoint(args.checkpoint, cfg)
    result, nll = run_eval(cfg, params, tokens, ev)
    result["threads"] = torch.get_num_threads()
    if args.nll_out:
        nll.astype("<f8").tofile(args.nll_out)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
