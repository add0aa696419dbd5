#!/usr/bin/env python3
"""PyTorch twin of pgolf's training loop (docs/training.md), written from the docs alone.

Run it with Debian's /usr/bin/python3 (Python 3.11, torch 1.13 CPU, numpy). The model is
tests/reference/twin.py (imported, not copied). Everything runs in float32 except where the
optimizer functions are called on float64 tensors (the single-step goldens).

Module:
- TrainStream(glob): the train stream (sorted shards, read sequentially, wrapping around;
  position (shard, offset)); micro_batch(stream, W, A, batch_tokens, T) -> per-rank batches;
- lr_scale(s, train): the `iterations` warmdown form (the others raise NotImplementedError);
- muon_momentum, newton_schulz, muon_update, adamw_update, sgd_update: the optimizer
  updates of docs/training.md as dtype-generic in-place functions;
- fake_quant_int6 / qat_names: late QAT (straight-through);
- Trainer(full_cfg, params, world_size): one training step at a time (loader, micro-steps,
  rank averaging, clipping, optimizer, EMA, SWA, QAT, recurrence switch-on).

CLI:
    /usr/bin/python3 tests/reference/twin_train.py CONFIG.json INIT.safetensors --steps N \
        [--threads T] [--world-size W] [--save-final OUT.safetensors] [--save-ema OUT.safetensors]

CONFIG is a resolved config (`pgolf inspect config FILE > CONFIG.json`; sections data,
model, train, optim are read). INIT is a checkpoint holding every parameter of the table
(e.g. `pgolf init`). Prints one JSON object: per-step train loss, lr scale, pre-clip
gradient norm, clip coefficient, Muon momentum, qat/recurrence flags, SWA additions, and the
float64 sum / sum of squares of the final parameters and EMA.
"""
import argparse
import glob as globmod
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin  # noqa: E402

CLIP_EPS = 1e-6
MUON_NORM_EPS = 1e-7
ROW_NORM_FLOOR = 1e-7

INT6_SUBSTRINGS = (".attn.c_q.", ".attn.c_k.", ".attn.c_v.", ".attn.proj.", ".mlp.fc.", ".mlp.proj.")
RECORD_SMALL_PROJECTIONS = ("bigram.proj.weight", "ve_shared.proj.weight")


# --------------------------------------------------------------------------------------
# Data: the train stream (docs/training.md "Batches")
# --------------------------------------------------------------------------------------

read_shard = twin.read_shard


class TrainStream:
    """The concatenation of the shards matching `pattern` in sorted order (Python's sorted()
    on the full path strings, i.e. byte order), read sequentially and wrapping around to
    the first shard. The position is (shard index, offset in that shard); it always points
    at a token (never at the end of a shard)."""

    def __init__(self, pattern, vocab_size=None):
        self.files = sorted(globmod.glob(pattern))
        if not self.files:
            raise ValueError(f"no train shards match {pattern!r}")
        self.shards = [read_shard(p) for p in self.files]
        self.total = sum(len(s) for s in self.shards)
        if self.total == 0:
            raise ValueError(f"the train shards {pattern!r} hold no tokens")
        if vocab_size is not None:
            for p, s in zip(self.files, self.shards):
                if len(s) and int(s.max()) >= vocab_size:
                    raise ValueError(f"{p}: token id {int(s.max())} >= vocab_size {vocab_size}")
        self.shard = 0
        self.offset = 0
        self._skip_empty()

    def _skip_empty(self):
        while self.offset >= len(self.shards[self.shard]):
            self.shard = (self.shard + 1) % len(self.shards)
            self.offset = 0

    def position(self):
        return (self.shard, self.offset)

    def set_position(self, shard, offset):
        self.shard, self.offset = shard, offset
        self._skip_empty()

    def take(self, n):
        """The next n tokens of the stream (int64 numpy array)."""
        out = []
        need = n
        while need > 0:
            s = self.shards[self.shard]
            k = min(need, len(s) - self.offset)
            out.append(s[self.offset:self.offset + k])
            need -= k
            self.offset += k
            self._skip_empty()
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def grad_accum_steps(train, world_size):
    A = int(train["grad_accum_steps"])
    if A == 0:
        if 8 % world_size:
            raise ValueError("grad_accum_steps 0 means 8 / W, which needs W to divide 8")
        A = 8 // world_size
    return A


def local_tokens(train, world_size, A, T):
    bt = int(train["batch_tokens"])
    if bt % (world_size * A):
        raise ValueError(f"batch_tokens {bt} is not a multiple of W * A = {world_size * A}")
    n = bt // (world_size * A)
    if n % T:
        raise ValueError(f"batch_tokens / (W * A) = {n} is not a multiple of seq_len {T}")
    return n


def micro_batch(stream, world_size, n_local, T):
    """One micro-step: the next W * span tokens, span = n_local + 1; rank r gets
    (inputs, targets) as int64 tensors [n_local / T, T]."""
    span = n_local + 1
    chunk = stream.take(world_size * span)
    out = []
    for r in range(world_size):
        mine = chunk[r * span:(r + 1) * span]
        ids = torch.from_numpy(mine[:-1].reshape(-1, T).copy())
        tg = torch.from_numpy(mine[1:].reshape(-1, T).copy())
        out.append((ids, tg))
    return out


# --------------------------------------------------------------------------------------
# Learning-rate scale
# --------------------------------------------------------------------------------------

def lr_scale(s, train):
    form = train["warmdown"]["form"]
    if form == "iterations":
        w = int(train["warmdown"]["iters"])
        I = int(train["iterations"])
        start = max(I - w, 0)
        if s < start:
            return 1.0
        return max((I - s) / max(w, 1), 0.0)
    if form in ("wallclock", "fraction"):
        raise NotImplementedError(f"warmdown.form {form!r} depends on measured time; the twin "
                                  "implements only 'iterations'")
    raise ValueError(f"unknown warmdown.form {form!r}")


# --------------------------------------------------------------------------------------
# Optimizers (in place; dtype-generic so the goldens can run them in float64)
# --------------------------------------------------------------------------------------

def muon_momentum(s, muon):
    """mu = (1 - f) * momentum_warmup_start + f * momentum, f = min(s / warmup_steps, 1)."""
    steps = int(muon["momentum_warmup_steps"])
    f = 1.0 if steps == 0 else min(s / steps, 1.0)
    return (1.0 - f) * float(muon["momentum_warmup_start"]) + f * float(muon["momentum"])


def newton_schulz(U, steps, coeffs):
    """X = U / (||U||_F + 1e-7); transposed when rows > cols; `steps` times
    A = X X^T, X = a X + (b A + c A A) X; transposed back. In U's dtype."""
    a, b, c = (float(v) for v in coeffs)
    X = U / (torch.linalg.norm(U) + MUON_NORM_EPS)
    transposed = U.shape[0] > U.shape[1]
    if transposed:
        X = X.t()
    for _ in range(int(steps)):
        A = X @ X.t()
        Bm = b * A + c * (A @ A)
        X = a * X + Bm @ X
    if transposed:
        X = X.t()
    return X.contiguous()


def muon_direction(G, B, mu, nesterov, row_normalize, ns_steps, coeffs):
    """Updates the momentum buffer B in place (B = mu B + G) and returns the
    orthogonalised direction X (Nesterov U = G + mu B, else U = B; MuonEq-R row
    normalisation of U before Newton-Schulz)."""
    B.mul_(mu).add_(G)
    U = G + mu * B if nesterov else B.clone()
    if row_normalize:
        norms = torch.linalg.norm(U, dim=1, keepdim=True)
        U = U / torch.clamp(norms, min=ROW_NORM_FLOOR)
    return newton_schulz(U, ns_steps, coeffs)


def muon_update(W, G, B, lr, weight_decay, mu, nesterov, row_normalize, ns_steps, coeffs):
    """W = W (1 - lr wd) - lr sqrt(max(1, rows / cols)) X; returns X."""
    X = muon_direction(G, B, mu, nesterov, row_normalize, ns_steps, coeffs)
    rows, cols = W.shape
    W.mul_(1.0 - lr * weight_decay)
    W.sub_((lr * math.sqrt(max(1.0, rows / cols))) * X)
    return X


def adamw_update(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay):
    """torch.optim.AdamW (amsgrad off, maximize off) step number t (1-based), the same
    tensor operations in the same order as torch 1.13's _single_tensor_adamw."""
    p.mul_(1 - lr * weight_decay)
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    bias_correction1 = 1 - beta1 ** t
    bias_correction2 = 1 - beta2 ** t
    step_size = lr / bias_correction1
    denom = (v.sqrt() / math.sqrt(bias_correction2)).add_(eps)
    p.addcdiv_(m, denom, value=-step_size)


def sgd_update(p, g, buf, lr, momentum):
    """SGD with momentum (no dampening, no Nesterov, no weight decay), as torch.optim.SGD:
    B = g on the first call (buf None), else B = momentum B + g; p = p - lr B.
    Returns the buffer."""
    if buf is None:
        buf = g.clone()
    else:
        buf.mul_(momentum).add_(g)
    p.add_(buf, alpha=-lr)
    return buf


# --------------------------------------------------------------------------------------
# Late QAT
# --------------------------------------------------------------------------------------

def fake_quant_int6_values(W):
    """Per row s = max(max|W_r| / 31, 1/31), q = clamp(round_half_even(W / s), -32, 31),
    returns q * s (W's dtype)."""
    rowmax = W.abs().amax(dim=1, keepdim=True)
    s = torch.clamp(rowmax / 31.0, min=1.0 / 31.0)
    q = torch.clamp(torch.round(W / s), -32, 31)
    return q * s


class _FakeQuantSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, W):
        return fake_quant_int6_values(W)

    @staticmethod
    def backward(ctx, grad):
        return grad


def fake_quant_int6(W):
    """Fake-quantised W with the straight-through gradient (d out / d W = identity)."""
    return _FakeQuantSTE.apply(W)


def qat_names(params, scope, passthrough_max_numel):
    """all_int6: the tensors SPEC 5.1 exports as int6 -- attention/MLP matrices with more than
    export.passthrough_max_numel elements (smaller tensors are stored as fp16)."""
    if scope == "all_int6":
        return [n for n, p in params.items()
                if p.numel() > passthrough_max_numel and any(sub in n for sub in INT6_SUBSTRINGS)]
    if scope == "record_small_projections":
        return [n for n in params if n in RECORD_SMALL_PROJECTIONS]
    raise ValueError(f"unknown qat.scope {scope!r}")


# --------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------

def _req(section, key, where):
    if key not in section:
        raise ValueError(f"config lacks {where}.{key}: pass a resolved config "
                         "(`pgolf inspect config FILE`)")
    return section[key]


def load_full_config(path_or_dict):
    raw = twin.read_config_json(path_or_dict)
    for sec in ("train", "optim"):
        _req(raw, sec, "config")
    return raw


class Trainer:
    """One rank's training loop (or W simulated ranks, run one after the other).

    qat_timing: with s* the first step whose scale < qat.start_scale, "same_step" (default:
    docs/training.md item 8 "from the first step whose scale < start_scale", as the #549
    script does: the forwards of steps s >= s* are fake-quantised) or "next_step" (item 8's
    position after the update read literally: only steps s > s*).
    """

    def __init__(self, full_cfg, params, world_size=1, stream=None, qat_timing="same_step",
                 lr_scale_fn=None):
        self.full = full_cfg
        self.cfg = twin.load_config(full_cfg)
        self.train = full_cfg["train"]
        self.optim = full_cfg["optim"]
        self.W = int(world_size)
        self.A = grad_accum_steps(self.train, self.W)
        self.T = self.cfg["seq_len"]
        self.n_local = local_tokens(self.train, self.W, self.A, self.T)
        self.stream = stream
        if qat_timing not in ("next_step", "same_step"):
            raise ValueError("qat_timing must be next_step or same_step")
        self.qat_timing = qat_timing
        self.lr_scale_fn = lr_scale_fn or (lambda s: lr_scale(s, self.train))
        if float(self.train.get("wallclock_cap_s", 0.0)) > 0 and lr_scale_fn is None:
            raise NotImplementedError("a wall-clock cap makes training depend on measured time; "
                                      "the twin needs train.wallclock_cap_s = 0")

        table = twin.param_table(self.cfg)
        self.names = [n for n, _, _, _ in table]
        self.group = {n: g for n, _, _, g in table}
        for n, shape, _, _ in table:
            if n not in params:
                raise ValueError(f"missing parameter {n}")
            if tuple(params[n].shape) != tuple(shape):
                raise ValueError(f"{n}: shape {list(params[n].shape)} != {list(shape)}")
        self.params = {n: params[n].detach().to(torch.float32).clone().requires_grad_(True)
                       for n in self.names}

        # per-parameter AdamW settings / Muon state
        tied = self.cfg["tie_embeddings"]
        self.adam_cfg = {}
        for n in self.names:
            g = self.group[n]
            if g == "matrix":
                continue
            c = dict(self.optim[g])
            if g == "embed" and not tied:  # every token-indexed table, as #549
                c["lr"] = float(self.optim["untied_embed_lr"])
            self.adam_cfg[n] = c
        self.muon = self.optim["muon"]
        self.muon_buf = {n: torch.zeros_like(self.params[n]) for n in self.names
                         if self.group[n] == "matrix"}
        self.adam_m = {n: torch.zeros_like(self.params[n]) for n in self.adam_cfg}
        self.adam_v = {n: torch.zeros_like(self.params[n]) for n in self.adam_cfg}

        ema = self.train["ema"]
        self.ema_enabled = bool(ema["enabled"])
        self.ema_decay = float(ema["decay"])
        self.ema = ({n: p.detach().clone() for n, p in self.params.items()}
                    if self.ema_enabled else None)
        swa = self.train["swa"]
        self.swa_enabled = bool(swa["enabled"])
        self.swa_sum = None
        self.swa_count = 0

        qat = self.train["qat"]
        self.qat_enabled_cfg = bool(qat["enabled"])
        self.qat_scope = (qat_names(self.params, qat["scope"], int(full_cfg["export"]["passthrough_max_numel"]))
                          if self.qat_enabled_cfg else [])
        self.qat_on = False  # fake quantisation in the forwards of the current / next step

        rec = self.cfg["recurrence"]
        self.rec_start = int(rec["start_step"])
        self.has_recurrence = len(rec["virtual_layers"]) > 0
        if self.has_recurrence and float(rec["start_frac"]) > 0:
            raise NotImplementedError("recurrence.start_frac > 0 switches recurrence on by "
                                      "wall-clock fraction; the twin supports start_step only")
        self.step_index = 0

    # -- helpers -----------------------------------------------------------------------

    def recurrence_active(self, s):
        return self.has_recurrence and s >= self.rec_start

    def forward_params(self, qat):
        if not qat:
            return self.params
        P = dict(self.params)
        for n in self.qat_scope:
            P[n] = fake_quant_int6(self.params[n])
        return P

    def next_batches(self):
        """A lists (micro-steps) of W (ids, targets) pairs."""
        return [micro_batch(self.stream, self.W, self.n_local, self.T) for _ in range(self.A)]

    # -- one step ----------------------------------------------------------------------

    def step(self, batches=None):
        s = self.step_index
        scale = self.lr_scale_fn(s)
        if self.qat_enabled_cfg and self.qat_timing == "same_step" and scale < float(
                self.train["qat"]["start_scale"]):
            self.qat_on = True
        qat = self.qat_on
        rec = self.recurrence_active(s)
        if batches is None:
            batches = self.next_batches()
        A, W = self.A, self.W
        c = float(self.train["grad_clip_norm"])
        local_clip = self.train["clip_scope"] == "local_rank"
        if self.train["clip_scope"] not in ("local_rank", "rank_averaged"):
            raise ValueError(f"unknown clip_scope {self.train['clip_scope']!r}")

        # 2. micro-steps on every rank; 3. average over ranks (4. local_rank clips first)
        rank_losses = []
        grad_sum = None
        reported_norm = None
        for r in range(W):
            for p in self.params.values():
                p.grad = None
            losses = []
            for a in range(A):
                ids, targets = batches[a][r]
                P = self.forward_params(qat)
                lo = twin.loss(twin.forward(P, self.cfg, ids, rec, torch.float32), targets)
                (lo / A).backward()
                losses.append(float(lo.item()))
            rank_losses.append(sum(losses) / A)
            grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone()
                     for n, p in self.params.items()}
            if local_clip:
                n_r, coef_r = self._clip(grads, c)
                if r == 0:
                    reported_norm, reported_coef = n_r, coef_r
            if grad_sum is None:
                grad_sum = grads
            else:
                for n in grad_sum:
                    grad_sum[n].add_(grads[n])
        if W > 1:
            for n in grad_sum:
                grad_sum[n].div_(W)
        grads = grad_sum
        if not local_clip:
            reported_norm, reported_coef = self._clip(grads, c)
        for p in self.params.values():
            p.grad = None

        # 5. optimizer updates
        mu = muon_momentum(s, self.muon)
        t = s + 1
        with torch.no_grad():
            for n in self.names:
                p, g = self.params[n], grads[n]
                if self.group[n] == "matrix":
                    muon_update(p, g, self.muon_buf[n], float(self.muon["lr"]) * scale,
                                float(self.muon["weight_decay"]), mu, bool(self.muon["nesterov"]),
                                bool(self.muon["row_normalize"]), int(self.muon["ns_steps"]),
                                self.muon["ns_coefficients"])
                else:
                    ac = self.adam_cfg[n]
                    adamw_update(p, g, self.adam_m[n], self.adam_v[n], t, float(ac["lr"]) * scale,
                                 float(ac["beta1"]), float(ac["beta2"]), float(ac["eps"]),
                                 float(ac["weight_decay"]))
            # 6. EMA
            if self.ema_enabled:
                d = self.ema_decay
                for n in self.names:
                    self.ema[n].mul_(d).add_(self.params[n].detach() * (1.0 - d))
            # 7. SWA
            swa_added = False
            if (self.swa_enabled and scale < float(self.train["swa"]["start_scale"])
                    and (s + 1) % int(self.train["swa"]["every"]) == 0):
                if self.swa_sum is None:
                    self.swa_sum = {n: p.detach().clone() for n, p in self.params.items()}
                else:
                    for n in self.names:
                        self.swa_sum[n].add_(self.params[n].detach())
                self.swa_count += 1
                swa_added = True
        # 8. late QAT for later steps
        if self.qat_enabled_cfg and scale < float(self.train["qat"]["start_scale"]):
            self.qat_on = True
        self.step_index += 1
        return {
            "step": s,
            "loss": sum(rank_losses) / W,
            "lr_scale": scale,
            "grad_norm": reported_norm,
            "clip_coef": reported_coef,
            "muon_momentum": mu,
            "qat": qat,
            "recurrence": rec,
            "swa_added": swa_added,
        }

    @staticmethod
    def _clip(grads, c):
        """Pre-clip global norm n (float32 squares accumulated in float64) and, when c > 0,
        multiply every gradient by min(1, c / (n + 1e-6)) (coefficient rounded to float32)."""
        total = 0.0
        for g in grads.values():
            total += float(g.double().pow(2).sum().item())
        n = math.sqrt(total)
        coef = 1.0
        if c > 0:
            coef = min(1.0, c / (n + CLIP_EPS))
            if coef < 1.0:
                for g in grads.values():
                    g.mul_(coef)
        return n, coef


def tensor_sums(tensors):
    """Per tensor and total float64 sum and sum of squares."""
    per = {}
    tot_s = tot_q = 0.0
    for n, t in tensors.items():
        d = t.detach().double()
        s, q = float(d.sum().item()), float(d.pow(2).sum().item())
        per[n] = {"sum": s, "sumsq": q}
        tot_s += s
        tot_q += q
    return {"sum": tot_s, "sumsq": tot_q, "per_param": per}


def load_init(path, cfg):
    tensors, _ = twin.load(path)
    out = {}
    for name, shape, _, _ in twin.param_table(cfg):
        if name not in tensors:
            raise ValueError(f"{path}: missing parameter {name}")
        out[name] = tensors[name].to(torch.float32)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch twin of pgolf's training loop")
    ap.add_argument("config", help="resolved config JSON (pgolf inspect config FILE)")
    ap.add_argument("init", help="initial parameters (safetensors, e.g. pgolf init)")
    ap.add_argument("--steps", type=int, default=0, help="steps to run (0: train.iterations)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--world-size", type=int, default=1,
                    help="simulated ranks (run one after the other; default 1)")
    ap.add_argument("--qat-timing", choices=["same_step", "next_step"], default="same_step",
                    help="QAT from the first step with scale < start_scale (same_step, default) "
                         "or from the step after it (next_step)")
    ap.add_argument("--config-name", default=None, help="recorded in the output")
    ap.add_argument("--init-seed", type=int, default=None, help="recorded in the output")
    ap.add_argument("--generator", default=None, help="recorded in the output")
    ap.add_argument("--no-per-param", action="store_true", help="omit per-parameter sums")
    ap.add_argument("--save-final", default=None, help="write the final parameters here")
    ap.add_argument("--save-ema", default=None, help="write the final EMA parameters here")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    full = load_full_config(args.config)
    cfg = twin.load_config(full)
    params = load_init(args.init, cfg)
    stream = TrainStream(_req(full["data"], "train_files", "data"), cfg["vocab_size"])
    tr = Trainer(full, params, world_size=args.world_size, stream=stream,
                 qat_timing=args.qat_timing)
    steps = args.steps or int(full["train"]["iterations"])
    records = [tr.step() for _ in range(steps)]
    out = {}
    if args.generator is not None:
        out["generator"] = args.generator
    if args.config_name is not None:
        out["config"] = args.config_name
    if args.init_seed is not None:
        out["init_seed"] = args.init_seed
    fin = tensor_sums(tr.params)
    ema = tensor_sums(tr.ema) if tr.ema is not None else None
    if args.no_per_param:
        fin.pop("per_param")
        if ema:
            ema.pop("per_param")
    out.update({
        "steps": steps,
        "world_size": tr.W,
        "grad_accum_steps": tr.A,
        "qat_timing": tr.qat_timing,
        "train_files": stream.files,
        "loader_position_end": list(stream.position()),
        "loss": [r["loss"] for r in records],
        "lr_scale": [r["lr_scale"] for r in records],
        "grad_norm": [r["grad_norm"] for r in records],
        "clip_coef": [r["clip_coef"] for r in records],
        "muon_momentum": [r["muon_momentum"] for r in records],
        "qat": [r["qat"] for r in records],
        "recurrence": [r["recurrence"] for r in records],
        "swa_added": [r["swa_added"] for r in records],
        "swa_count": tr.swa_count,
        "final_params": fin,
        "final_ema": ema,
        "final_swa_sum": (tensor_sums(tr.swa_sum)["sum"] if tr.swa_sum is not None else None),
    })
    print(json.dumps(out, indent=1))
    if args.save_final:
        twin.save(args.save_final, {n: tr.params[n].detach() for n in tr.names},
                  {"generator": "tests/reference/twin_train.py", "steps": str(steps)})
    if args.save_ema and tr.ema is not None:
        twin.save(args.save_ema, {n: tr.ema[n] for n in tr.names},
                  {"generator": "tests/reference/twin_train.py", "steps": str(steps)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
