#!/usr/bin/env python3
"""Self-checks of the PyTorch twin, run on the committed goldens:

1. the goldens' stored float64 logits, loss and gradients equal a fresh twin run;
2. the float64 gradients agree with fourth-order central finite differences of the loss
   (h = 1e-4) for random elements of every parameter and for a random direction through
   each whole parameter (max relative errors printed; expect ~1e-8 or better);
3. the batched forward agrees with a slow, loop-based transcription of docs/model.md
   (positions, heads and hash done one at a time with Python ints);
4. BigramHash agrees with plain Python 32-bit arithmetic, including ids where the
   products wrap around.

    /usr/bin/python3 tests/reference/check_twin_gradients.py [golden files...]
"""
import glob
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import twin  # noqa: E402

F64 = torch.float64


def load_golden(path):
    tensors, meta = twin.load(path)
    cfg = twin.load_config(json.loads(meta["config"]))
    active = meta["recurrence_active"] == "true"
    params = {n: tensors["param." + n].to(F64) for n, _, _, _ in twin.param_table(cfg)}
    return cfg, active, tensors, params


def loss_of(params, cfg, ids, targets, active):
    with torch.no_grad():
        return twin.loss(twin.forward(params, cfg, ids, active, F64), targets).item()


def _stencil(f, h):
    """Fourth-order central difference of f at 0 (truncation O(h^4))."""
    return (8 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12 * h)


def fd_check(path, per_param=3, h=1e-4, seed=0):
    """For every parameter: `per_param` random elements among those with |grad| >= 10% of
    the tensor's largest, plus a direction through the whole tensor (the normalised sum of
    the unit gradient and a unit random vector, so the derivative is large but every
    element's error shows); relative error of the analytic value against a fourth-order
    central difference. h = 1e-4 balances rounding (the loss is ~5, gradients down to
    ~1e-4) against LeakyReLU kinks crossed by larger steps."""
    cfg, active, tensors, params = load_golden(path)
    ids, targets = tensors["input.ids"], tensors["input.targets"]
    rng = np.random.RandomState(seed)
    worst_el, worst_el_where, worst_dir, worst_dir_where, n_checked = 0.0, None, 0.0, None, 0

    def along(name, direction):
        def f(eps):
            moved = dict(params)
            moved[name] = params[name] + eps * direction
            return loss_of(moved, cfg, ids, targets, active)
        return f

    for name, p in params.items():
        g = tensors["f64.grad." + name]
        gflat = g.reshape(-1)
        gmax = gflat.abs().max().item()
        big = torch.nonzero(gflat.abs() >= 0.1 * gmax).reshape(-1).numpy()
        for idx in rng.choice(big, size=min(per_param, len(big)), replace=False):
            e = torch.zeros(p.numel(), dtype=F64)
            e[int(idx)] = 1.0
            fd = _stencil(along(name, e.view(p.shape)), h)
            an = gflat[int(idx)].item()
            rel = abs(fd - an) / max(abs(fd), abs(an))
            if rel > worst_el:
                worst_el, worst_el_where = rel, f"{name}[{int(idx)}]"
            n_checked += 1
        direction = torch.from_numpy(rng.standard_normal(tuple(p.shape)))
        direction = direction / direction.norm() + g / g.norm()
        direction = direction / direction.norm()
        fd = _stencil(along(name, direction), h)
        an = (g * direction).sum().item()
        rel = abs(fd - an) / max(abs(fd), abs(an))
        if rel > worst_dir:
            worst_dir, worst_dir_where = rel, name
    return worst_el, worst_el_where, worst_dir, worst_dir_where, n_checked


# ---------------------------------------------------------------- slow reference ------

def _i32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= (1 << 31) else v


def slow_hash(prev, cur, vb):
    return (_i32(36313 * cur) ^ _i32(27191 * prev)) % (vb - 1)  # Python % is non-negative


def slow_forward(P, cfg, seq, active):
    """One sequence (list of ids), float64, positions and heads one at a time."""
    D = twin.dims(cfg)
    V, L, d, H, Hkv, hd, n_skip = D["V"], D["L"], D["d"], D["H"], D["Hkv"], D["hd"], D["n_skip"]
    Tn = len(seq)
    eps = 1.1920928955078125e-07

    def rms(v):
        return v / math.sqrt(float((v * v).mean()) + eps)

    def rows_rms(m):
        return torch.stack([rms(m[t]) for t in range(m.shape[0])])

    e = []
    for t in range(Tn):
        row = P["tok_emb.weight"][seq[t]].clone()
        if cfg["bigram"]["enabled"]:
            vb = cfg["bigram"]["vocab_size"]
            hsh = vb - 1 if t == 0 else slow_hash(seq[t - 1], seq[t], vb)
            row = row + P["bigram.scale"] * (P["bigram.proj.weight"] @ P["bigram.embed.weight"][hsh])
        e.append(rms(row))
    if cfg["smear_gate"]:
        g = torch.sigmoid(P["smear.gate"])
        e = [(1 - g) * e[t] + g * (e[t - 1] if t > 0 else torch.zeros(d, dtype=F64)) for t in range(Tn)]
    x0 = torch.stack(e)

    r = cfg["rope"]["dims"]
    base = cfg["rope"]["base"]
    if cfg["seq_len"] > cfg["rope"]["train_len"]:
        base = base * (cfg["seq_len"] / cfg["rope"]["train_len"]) ** (r / (r - 2))

    def rope(vec, t):
        out = vec.clone()
        for j in range(r // 2):
            th = t * base ** (-2 * j / r)
            a, b = vec[j].item(), vec[r // 2 + j].item()
            out[j] = a * math.cos(th) + b * math.sin(th)
            out[r // 2 + j] = -a * math.sin(th) + b * math.cos(th)
        return out

    def attn(i, u):
        pre = f"blocks.{i}.attn."
        ve_layers = cfg["value_embed"]["layers"] if cfg["value_embed"]["enabled"] else []
        out = torch.zeros(Tn, d, dtype=F64)
        Q, K, Vv = [], [], []
        for t in range(Tn):
            q = P[pre + "c_q.weight"] @ u[t]
            k = P[pre + "c_k.weight"] @ u[t]
            v = P[pre + "c_v.weight"] @ u[t]
            if i in ve_layers:
                kk = ve_layers.index(i)
                v = v + P["ve_shared.scale"] * P[f"ve_layer_scales.{kk}"] * (
                    P["ve_shared.proj.weight"] @ P["ve_shared.embed.weight"][seq[t]])
            Q.append([rope(rms(q[h * hd:(h + 1) * hd]), t) * P[pre + "q_gain"][h] for h in range(H)])
            K.append([rope(rms(k[g * hd:(g + 1) * hd]), t) for g in range(Hkv)])
            Vv.append([v[g * hd:(g + 1) * hd] for g in range(Hkv)])
        for t in range(Tn):
            y = []
            for h in range(H):
                g = h // (H // Hkv)
                sc = torch.stack([Q[t][h] @ K[s][g] / math.sqrt(hd) for s in range(t + 1)])
                p = torch.softmax(sc, dim=0)
                yh = sum(p[s] * Vv[s][g] for s in range(t + 1))
                if i >= L - cfg["xsa_last_n"]:
                    vh = Vv[t][g] / max(float(Vv[t][g].norm()), 1e-12)
                    yh = yh - (yh @ vh) * vh
                y.append(yh)
            out[t] = P[pre + "proj.weight"] @ torch.cat(y)
        return out

    def mlp(i, u):
        z = u @ P[f"blocks.{i}.mlp.fc.weight"].t()
        z = torch.where(z >= 0, z, cfg["leaky_relu_slope"] * z)
        return (z * z) @ P[f"blocks.{i}.mlp.proj.weight"].t()

    def s_i(i):
        return 1 / math.sqrt(i + 1) if cfg["ln_scale"] else 1.0

    def skip(t, k, s):
        w = P["skip_weights"][k]
        if cfg["sigmoid_skip_gates"]:
            g = torch.sigmoid(P["skip_gates"][k])
            return g * t + (1 - g) * (w * s)
        return t + w * s

    layers = cfg["recurrence"]["virtual_layers"] if active and cfg["recurrence"]["virtual_layers"] else list(range(L))
    n_enc = len(layers) // 2
    stack, x, lane0, lane1, split = [], x0, None, None, False
    P_start = cfg["parallel_residual"]["start_layer"]
    for step, i in enumerate(layers):
        if step >= n_enc:
            j = step - n_enc
            if stack:
                if cfg["recurrence"]["skip_policy"] == "clamp":
                    k = min(j, n_skip - 1)
                else:
                    k = j if j < n_skip else None
                if k is not None:
                    s = stack.pop()
                    if not split:
                        x = skip(x, k, s)
                    elif cfg["parallel_residual"]["skip_policy"] == "both_lanes":
                        lane0, lane1 = skip(lane0, k, s), skip(lane1, k, s)
                    else:
                        x = skip(x, k, s)  # dead x
            if not split and P_start >= 0 and i >= P_start:
                split, lane0, lane1 = True, x, x
        mix = P[f"blocks.{i}.resid_mix"]
        if not split:
            xin = mix[0] * x + mix[1] * x0
            x = xin + P[f"blocks.{i}.attn_scale"] * attn(i, rows_rms(xin) * s_i(i))
            x = x + P[f"blocks.{i}.mlp_scale"] * mlp(i, rows_rms(x) * s_i(i))
        else:
            m0 = mix[0] * lane0 + mix[1] * x0
            lane0 = m0 + P[f"blocks.{i}.attn_scale"] * attn(i, rows_rms(m0) * s_i(i))
            lane1 = lane1 + P[f"blocks.{i}.mlp_scale"] * mlp(i, rows_rms(lane1) * s_i(i))
        if step < n_enc:
            stack.append(x)
    if split:
        x = P["lane_merge"] * lane0 + (1 - P["lane_merge"]) * lane1
    W = P["tok_emb.weight"] if cfg["tie_embeddings"] else P["lm_head.weight"]
    z = rows_rms(x) @ W.t()
    c = cfg["logit_softcap"]
    return c * torch.tanh(z / c)


def slow_check(path):
    cfg, active, tensors, params = load_golden(path)
    ids = tensors["input.ids"]
    worst = 0.0
    for b in range(ids.shape[0]):
        ref = slow_forward(params, cfg, [int(v) for v in ids[b]], active)
        worst = max(worst, (ref - tensors["f64.logits"][b]).abs().max().item())
        # a shorter window (positions 0..9, RoPE base still from the configured T)
        short = slow_forward(params, cfg, [int(v) for v in ids[b, :10]], active)
        with torch.no_grad():
            fast = twin.forward(params, cfg, ids[b:b + 1, :10], active, F64)[0]
        worst = max(worst, (short - fast).abs().max().item())
    return worst


def hash_check():
    rng = np.random.RandomState(7)
    worst = 0
    for vb in (37, 512, 1536, 3072):
        prev = rng.randint(0, 65536, size=2000)
        cur = rng.randint(0, 65536, size=2000)
        prev[:4] = [65535, 60000, 0, 1]
        cur[:4] = [65535, 59139, 65535, 2]
        ids = torch.from_numpy(np.stack([prev, cur], axis=1).astype(np.int64))
        fast = twin.bigram_hash(ids, vb)[:, 1].tolist()
        slow = [slow_hash(int(p), int(c), vb) for p, c in zip(prev, cur)]
        worst = max(worst, sum(a != b for a, b in zip(fast, slow)))
    return worst


def main():
    files = sys.argv[1:] or sorted(glob.glob(os.path.join(HERE, "golden", "model_v1_*.safetensors")))
    torch.set_num_threads(1)
    ok = True
    mismatched = hash_check()
    print(json.dumps({"check": "bigram_hash_vs_python_int32", "mismatches": mismatched}))
    ok &= mismatched == 0
    for path in files:
        stored = twin.check_golden(path)
        rel, where, drel, dwhere, n = fd_check(path)
        slow = slow_check(path)
        good = (max(stored.values()) < 1e-12 and rel < 1e-6 and drel < 1e-6 and slow < 1e-12)
        ok &= good
        print(json.dumps({
            "file": os.path.basename(path),
            "stored_vs_fresh_max_abs": max(stored.values()),
            "fd_elements": n,
            "fd_max_rel_err_elements": rel,
            "fd_worst_element": where,
            "fd_max_rel_err_random_directions": drel,
            "fd_worst_direction": dwhere,
            "slow_loop_reference_max_abs_logit_diff": slow,
            "ok": bool(good),
        }))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
