#!/usr/bin/env python3
"""Single-step optimizer goldens (docs/training.md "Optimizers") in float64, with self-checks.

    /usr/bin/python3 tests/reference/make_optim_golden.py [OUT.safetensors]

Default OUT: tests/reference/golden/optim_v1.safetensors. Called by make_train_golden.sh.
Inputs are drawn from numpy.random.RandomState(SEED) in a fixed order; every update runs the
float64 versions of twin_train.py's functions. Before writing, it checks that
- AdamW equals torch.optim.AdamW bit for bit (float64 and float32, same inputs and state),
- SGD equals torch.optim.SGD(momentum) bit for bit (with and without a buffer),
- the Newton-Schulz outputs have singular values in NS_SV_RANGE (float64 and float32),
and prints the checks as one JSON object (exit 1 if one fails).
"""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin  # noqa: E402
import twin_train as tt  # noqa: E402

SEED = 20240601
GOLDEN_VERSION = "1"
NS_COEFFS = [3.4445, -4.775, 2.0315]
# The quintic's fixed-point band: p(x) = a x + b x^3 + c x^5 has p(1) = 0.7015, and after
# five steps the singular values oscillate in about [0.68, 1.14]; the sanity bound is wider.
NS_SV_RANGE = (0.65, 1.2)

MUON_HP = {"optimizer": "muon", "lr": 0.02, "weight_decay": 0.04, "step": 3,
           "momentum": 0.99, "momentum_warmup_start": 0.92, "momentum_warmup_steps": 10,
           "nesterov": True, "ns_steps": 5, "ns_coefficients": NS_COEFFS,
           "row_normalize": False}
ADAMW_HP = {"optimizer": "adamw", "lr": 0.01, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8,
            "weight_decay": 0.04, "t": 3}
SGD_HP = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9}


def t64(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def muon_case(name, param, grad, buf, hp, tensors, meta, checks):
    W, G, B = param.clone(), grad.clone(), buf.clone()
    mu = tt.muon_momentum(hp["step"], hp)
    # intermediates, recomputed the same way muon_direction does
    B_new = buf.clone().mul_(mu).add_(grad)
    U = grad + mu * B_new if hp["nesterov"] else B_new.clone()
    if hp["row_normalize"]:
        U = U / torch.clamp(torch.linalg.norm(U, dim=1, keepdim=True), min=tt.ROW_NORM_FLOOR)
    X = tt.muon_update(W, G, B, hp["lr"], hp["weight_decay"], mu, hp["nesterov"],
                       hp["row_normalize"], hp["ns_steps"], hp["ns_coefficients"])
    assert torch.equal(B, B_new)
    assert torch.equal(X, tt.newton_schulz(U, hp["ns_steps"], hp["ns_coefficients"]))
    tensors[f"{name}.param"] = param
    tensors[f"{name}.grad"] = grad
    tensors[f"{name}.buf"] = buf
    tensors[f"{name}.mid.u"] = U.contiguous()
    tensors[f"{name}.mid.ortho"] = X
    tensors[f"{name}.out.param"] = W
    tensors[f"{name}.out.buf"] = B
    meta[name] = json.dumps({**hp, "mu": mu, "rows": param.shape[0], "cols": param.shape[1],
                             "scale": math.sqrt(max(1.0, param.shape[0] / param.shape[1]))})
    sv64 = torch.linalg.svdvals(X)
    X32 = tt.newton_schulz(U.float(), hp["ns_steps"], hp["ns_coefficients"])
    sv32 = torch.linalg.svdvals(X32.double())
    checks[f"{name}.ns_singular_values_f64"] = [round(v, 6) for v in sv64.tolist()]
    checks[f"{name}.ns_singular_values_f32"] = [round(v, 6) for v in sv32.tolist()]
    checks[f"{name}.ns_f32_vs_f64_maxabs"] = float((X32.double() - X).abs().max())
    ok = bool(sv64.min() >= NS_SV_RANGE[0] and sv64.max() <= NS_SV_RANGE[1]
              and sv32.min() >= NS_SV_RANGE[0] and sv32.max() <= NS_SV_RANGE[1])
    checks[f"{name}.ns_sv_in_range"] = ok
    return ok


def torch_adamw(param, grad, m, v, hp):
    p = param.clone().requires_grad_(True)
    opt = torch.optim.AdamW([p], lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                            weight_decay=hp["weight_decay"])
    st = opt.state[p]
    st["step"] = torch.tensor(float(hp["t"] - 1))
    st["exp_avg"] = m.clone()
    st["exp_avg_sq"] = v.clone()
    p.grad = grad.clone()
    opt.step()
    return p.detach(), st["exp_avg"], st["exp_avg_sq"]


def torch_sgd(param, grad, buf, hp):
    p = param.clone().requires_grad_(True)
    opt = torch.optim.SGD([p], lr=hp["lr"], momentum=hp["momentum"])
    if buf is not None:
        opt.state[p]["momentum_buffer"] = buf.clone()
    p.grad = grad.clone()
    opt.step()
    return p.detach(), opt.state[p]["momentum_buffer"]


def recheck_numpy(path):
    """Reloads the written file and recomputes every output with a plain numpy float64
    transcription of docs/training.md (independent of twin_train.py); returns the largest
    absolute difference."""
    tensors, meta = twin.load(path)
    T = {k: v.numpy() for k, v in tensors.items()}
    worst = 0.0

    def diff(a, b):
        nonlocal worst
        worst = max(worst, float(np.abs(a - b).max()))

    for name in json.loads(meta["cases"]):
        hp = json.loads(meta[name])
        if hp["optimizer"] == "muon":
            W, G, B = T[name + ".param"], T[name + ".grad"], T[name + ".buf"]
            f = min(hp["step"] / hp["momentum_warmup_steps"], 1.0) if hp["momentum_warmup_steps"] else 1.0
            mu = (1 - f) * hp["momentum_warmup_start"] + f * hp["momentum"]
            B = mu * B + G
            U = G + mu * B if hp["nesterov"] else B
            if hp["row_normalize"]:
                U = U / np.maximum(np.sqrt((U * U).sum(axis=1, keepdims=True)), 1e-7)
            X = U / (np.sqrt((U * U).sum()) + 1e-7)
            rows, cols = W.shape
            if rows > cols:
                X = X.T
            a, b, c = hp["ns_coefficients"]
            for _ in range(hp["ns_steps"]):
                A = X @ X.T
                X = a * X + (b * A + c * A @ A) @ X
            if rows > cols:
                X = X.T
            W = W * (1 - hp["lr"] * hp["weight_decay"]) - hp["lr"] * math.sqrt(max(1, rows / cols)) * X
            diff(W, T[name + ".out.param"])
            diff(B, T[name + ".out.buf"])
            diff(X, T[name + ".mid.ortho"])
        elif hp["optimizer"] == "adamw":
            p, g, m, v = T[name + ".param"], T[name + ".grad"], T[name + ".m"], T[name + ".v"]
            t, lr = hp["t"], hp["lr"]
            p = p * (1 - lr * hp["weight_decay"])
            m = hp["beta1"] * m + (1 - hp["beta1"]) * g
            v = hp["beta2"] * v + (1 - hp["beta2"]) * g * g
            p = p - (lr / (1 - hp["beta1"] ** t)) * m / (np.sqrt(v) / math.sqrt(1 - hp["beta2"] ** t) + hp["eps"])
            diff(p, T[name + ".out.param"])
            diff(m, T[name + ".out.m"])
            diff(v, T[name + ".out.v"])
        else:
            p, g = T[name + ".param"], T[name + ".grad"]
            B = g if hp.get("first_call") else hp["momentum"] * T[name + ".buf"] + g
            diff(p - hp["lr"] * B, T[name + ".out.param"])
            diff(B, T[name + ".out.buf"])
    return worst


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "golden", "optim_v1.safetensors")
    torch.set_num_threads(1)
    rng = np.random.RandomState(SEED)
    tensors, meta, checks = {}, {}, {}
    ok = True

    # Muon / MuonEq-R: the MuonEq-R cases reuse the Muon cases' inputs.
    inputs = {}
    for shape in ((6, 4), (4, 6)):
        rows, cols = shape
        inputs[shape] = (t64(rng.standard_normal(shape) / math.sqrt(cols)),  # param
                         t64(rng.standard_normal(shape)),                     # grad
                         t64(0.5 * rng.standard_normal(shape)))               # buf
    for shape in ((6, 4), (4, 6)):
        ok &= muon_case(f"muon_{shape[0]}x{shape[1]}", *inputs[shape], MUON_HP, tensors, meta, checks)
    for shape in ((6, 4), (4, 6)):
        ok &= muon_case(f"muoneqr_{shape[0]}x{shape[1]}", *inputs[shape],
                        {**MUON_HP, "row_normalize": True}, tensors, meta, checks)

    # AdamW at t = 3 with given m, v
    hp = ADAMW_HP
    param = t64(rng.standard_normal((5, 3)))
    grad = t64(rng.standard_normal((5, 3)))
    m = t64(0.1 * rng.standard_normal((5, 3)))
    v = t64(0.01 * rng.standard_normal((5, 3)) ** 2)
    p2, m2, v2 = param.clone(), m.clone(), v.clone()
    tt.adamw_update(p2, grad, m2, v2, hp["t"], hp["lr"], hp["beta1"], hp["beta2"], hp["eps"],
                    hp["weight_decay"])
    for dt in (torch.float64, torch.float32):
        ref = torch_adamw(param.to(dt), grad.to(dt), m.to(dt), v.to(dt), hp)
        mine = [param.to(dt).clone(), m.to(dt).clone(), v.to(dt).clone()]
        tt.adamw_update(mine[0], grad.to(dt), mine[1], mine[2], hp["t"], hp["lr"], hp["beta1"],
                        hp["beta2"], hp["eps"], hp["weight_decay"])
        same = all(torch.equal(a, b) for a, b in zip(mine, ref))
        checks[f"adamw_vs_torch_exact_{str(dt).split('.')[-1]}"] = same
        ok &= same
    tensors.update({"adamw_5x3.param": param, "adamw_5x3.grad": grad, "adamw_5x3.m": m,
                    "adamw_5x3.v": v, "adamw_5x3.out.param": p2, "adamw_5x3.out.m": m2,
                    "adamw_5x3.out.v": v2})
    meta["adamw_5x3"] = json.dumps({**hp, "state_step_before": hp["t"] - 1})

    # SGD momentum with a pre-existing buffer, and the first call (no buffer)
    hp = SGD_HP
    param = t64(rng.standard_normal((5, 3)))
    grad = t64(rng.standard_normal((5, 3)))
    buf = t64(rng.standard_normal((5, 3)))
    p2 = param.clone()
    b2 = tt.sgd_update(p2, grad, buf.clone(), hp["lr"], hp["momentum"])
    p3 = param.clone()
    b3 = tt.sgd_update(p3, grad, None, hp["lr"], hp["momentum"])
    for dt in (torch.float64, torch.float32):
        rp, rb = torch_sgd(param.to(dt), grad.to(dt), buf.to(dt), hp)
        mp = param.to(dt).clone()
        mb = tt.sgd_update(mp, grad.to(dt), buf.to(dt).clone(), hp["lr"], hp["momentum"])
        rp1, rb1 = torch_sgd(param.to(dt), grad.to(dt), None, hp)
        mp1 = param.to(dt).clone()
        mb1 = tt.sgd_update(mp1, grad.to(dt), None, hp["lr"], hp["momentum"])
        same = (torch.equal(rp, mp) and torch.equal(rb, mb) and torch.equal(rp1, mp1)
                and torch.equal(rb1, mb1))
        checks[f"sgd_vs_torch_exact_{str(dt).split('.')[-1]}"] = same
        ok &= same
    tensors.update({"sgd_5x3.param": param, "sgd_5x3.grad": grad, "sgd_5x3.buf": buf,
                    "sgd_5x3.out.param": p2, "sgd_5x3.out.buf": b2,
                    "sgd_first_5x3.param": param, "sgd_first_5x3.grad": grad,
                    "sgd_first_5x3.out.param": p3, "sgd_first_5x3.out.buf": b3})
    meta["sgd_5x3"] = json.dumps(hp)
    meta["sgd_first_5x3"] = json.dumps({**hp, "first_call": True})

    tensors = {k: v.contiguous().to(torch.float64) for k, v in tensors.items()}
    metadata = {"golden_version": GOLDEN_VERSION,
                "generator": "tests/reference/make_optim_golden.py",
                "seed": str(SEED),
                "cases": json.dumps(["muon_6x4", "muon_4x6", "muoneqr_6x4", "muoneqr_4x6",
                                     "adamw_5x3", "sgd_5x3", "sgd_first_5x3"])}
    metadata.update(meta)
    checks["ok"] = bool(ok)
    print(json.dumps(checks))
    if not ok:
        return 1
    twin.save(out, tensors, metadata)
    worst = recheck_numpy(out)
    print(json.dumps({"numpy_transcription_max_abs_diff": worst}))
    return 0 if worst < 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
