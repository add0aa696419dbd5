#!/usr/bin/env python3
"""PyTorch twin of pgolf's model (docs/model.md), written from the docs alone.

Run it with Debian's /usr/bin/python3 (Python 3.11, torch 1.13 CPU, numpy). It provides

- load_config(path_or_dict): the resolved `model` section, missing keys taking the
  defaults of `pgolf inspect config` (the PR #549 record);
- param_table(cfg): the ordered parameter table of docs/model.md;
- init_params(cfg, seed): the table's initialisation (the twin's own RNG, numpy's
  legacy RandomState, so values differ from pgolf's but the distributions are the same);
- forward(params, cfg, ids, recurrence_active, dtype) -> logits [B, T, V] and
  loss(logits, targets) -> mean cross entropy, in float32 or float64;
- save(path, tensors, metadata) / load(path) -> (tensors, metadata): a self-contained
  safetensors reader/writer (no `safetensors` package needed).

CLI:
    /usr/bin/python3 tests/reference/twin.py table CONFIG.json
    /usr/bin/python3 tests/reference/twin.py check-golden tests/reference/golden/*.safetensors
    /usr/bin/python3 tests/reference/twin.py hash VB ID_PREV ID ...   (BigramHash values)
"""
import argparse
import copy
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

RMS_EPS = 1.1920928955078125e-07  # float32 machine epsilon, used in every precision
XSA_NORM_FLOOR = 1e-12

# --------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------

# The `model` section of `pgolf inspect config` with no file (the PR #549 record), in the
# same key order.
DEFAULT_MODEL = {
    "vocab_size": 1024,
    "num_layers": 11,
    "model_dim": 512,
    "num_heads": 8,
    "num_kv_heads": 4,
    "mlp_mult": 3.0,
    "leaky_relu_slope": 0.5,
    "seq_len": 2048,
    "rope": {"dims": 16, "base": 10000.0, "train_len": 1024},
    "qk_gain_init": 1.5,
    "logit_softcap": 30.0,
    "tie_embeddings": True,
    "tok_emb_init_std": 0.005,
    "ln_scale": True,
    "xsa_last_n": 4,
    "bigram": {"enabled": True, "vocab_size": 1536, "dim": 128, "scale_init": 0.05},
    "smear_gate": True,
    "value_embed": {
        "enabled": True,
        "dim": 128,
        "layers": [9, 10],
        "scale_init": 0.1,
        "init_std": 0.01,
    },
    "sigmoid_skip_gates": False,
    "recurrence": {
        "virtual_layers": [],
        "start_step": 0,
        "start_frac": 0.0,
        "skip_policy": "clamp",
    },
    "parallel_residual": {
        "start_layer": -1,
        "lane_merge_init": 0.5,
        "skip_policy": "both_lanes",
    },
}

_FLOAT_KEYS = {"mlp_mult", "leaky_relu_slope", "qk_gain_init", "logit_softcap",
               "tok_emb_init_std", "base", "scale_init", "init_std", "start_frac",
               "lane_merge_init"}


def _merge(defaults, override, where):
    out = copy.deepcopy(defaults)
    for key, value in override.items():
        if key not in defaults:
            raise ValueError(f"unknown config key {where}{key}")
        if isinstance(defaults[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"config key {where}{key} must be an object")
            out[key] = _merge(defaults[key], value, f"{where}{key}.")
        elif key in _FLOAT_KEYS:
            out[key] = float(value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path_or_dict):
    """Resolved `model` section (a dict in `pgolf inspect config` key order).

    Accepts a path to a resolved config JSON (as printed by `pgolf inspect config`), a
    dict holding a "model" section, or a dict that is a model section itself. Missing keys
    take the PR #549 defaults. "extends" is not followed: resolve with pgolf first.
    """
    raw = read_config_json(path_or_dict)
    model = raw["model"] if "model" in raw and isinstance(raw["model"], dict) else raw
    cfg = _merge(DEFAULT_MODEL, model, "model.")
    _validate(cfg)
    return cfg


def _validate(cfg):
    d, H, Hkv = cfg["model_dim"], cfg["num_heads"], cfg["num_kv_heads"]
    if d % H != 0 or H % Hkv != 0:
        raise ValueError("model_dim must be a multiple of num_heads, num_heads of num_kv_heads")
    r = cfg["rope"]["dims"]
    if r % 2 != 0 or r > d // H:
        raise ValueError("rope.dims must be even and <= head dim")
    if cfg["recurrence"]["skip_policy"] not in ("clamp", "none_beyond"):
        raise ValueError("recurrence.skip_policy must be clamp or none_beyond")
    if cfg["parallel_residual"]["skip_policy"] not in ("both_lanes", "dead_x"):
        raise ValueError("parallel_residual.skip_policy must be both_lanes or dead_x")
    L = cfg["num_layers"]
    for i in cfg["recurrence"]["virtual_layers"]:
        if not 0 <= i < L:
            raise ValueError("recurrence.virtual_layers entries must be physical layers")
    if cfg["bigram"]["enabled"] and cfg["bigram"]["vocab_size"] < 2:
        raise ValueError("bigram.vocab_size must be >= 2")


def dims(cfg):
    d, H, Hkv = cfg["model_dim"], cfg["num_heads"], cfg["num_kv_heads"]
    hd = d // H
    L = cfg["num_layers"]
    return {
        "V": cfg["vocab_size"], "L": L, "d": d, "H": H, "Hkv": Hkv, "hd": hd,
        "kvd": Hkv * hd, "f": int(cfg["mlp_mult"] * d),
        "n_skip": min(L // 2, L - L // 2),
    }


# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------

def param_table(cfg):
    """Ordered list of (name, shape, init, group) exactly as docs/model.md's table.

    init is one of ("normal", std), ("zeros",), ("ones",), ("const", value),
    ("orthogonal",), ("resid_mix",).
    """
    D = dims(cfg)
    V, L, d, H, kvd, f, n_skip = D["V"], D["L"], D["d"], D["H"], D["kvd"], D["f"], D["n_skip"]
    t = [("tok_emb.weight", (V, d), ("normal", cfg["tok_emb_init_std"]), "embed")]
    bg = cfg["bigram"]
    if bg["enabled"]:
        t += [
            ("bigram.embed.weight", (bg["vocab_size"], bg["dim"]), ("zeros",), "embed"),
            ("bigram.proj.weight", (d, bg["dim"]), ("orthogonal",), "scalar"),
            ("bigram.scale", (), ("const", bg["scale_init"]), "scalar"),
        ]
    if cfg["smear_gate"]:
        t.append(("smear.gate", (d,), ("zeros",), "scalar"))
    if n_skip > 0:
        t.append(("skip_weights", (n_skip, d), ("ones",), "scalar"))
        if cfg["sigmoid_skip_gates"]:
            t.append(("skip_gates", (n_skip, d), ("zeros",), "scalar"))
    ve = cfg["value_embed"]
    if ve["enabled"]:
        t += [
            ("ve_shared.embed.weight", (V, ve["dim"]), ("normal", ve["init_std"]), "embed"),
            ("ve_shared.proj.weight", (kvd, ve["dim"]), ("orthogonal",), "scalar"),
            ("ve_shared.scale", (), ("const", ve["scale_init"]), "scalar"),
        ]
        for k in range(len(ve["layers"])):
            t.append((f"ve_layer_scales.{k}", (1,), ("ones",), "scalar"))
    pr = cfg["parallel_residual"]
    if pr["start_layer"] >= 0:
        t.append(("lane_merge", (), ("const", pr["lane_merge_init"]), "scalar"))
    if not cfg["tie_embeddings"]:
        t.append(("lm_head.weight", (V, d), ("zeros",), "head"))
    for i in range(L):
        t += [
            (f"blocks.{i}.attn.q_gain", (H,), ("const", cfg["qk_gain_init"]), "scalar"),
            (f"blocks.{i}.attn_scale", (d,), ("ones",), "scalar"),
            (f"blocks.{i}.mlp_scale", (d,), ("ones",), "scalar"),
            (f"blocks.{i}.resid_mix", (2, d), ("resid_mix",), "scalar"),
        ]
    banks = [
        ("attn.c_q.weight", (d, d), ("orthogonal",)),
        ("attn.proj.weight", (d, d), ("zeros",)),
        ("attn.c_k.weight", (kvd, d), ("orthogonal",)),
        ("attn.c_v.weight", (kvd, d), ("orthogonal",)),
        ("mlp.fc.weight", (f, d), ("orthogonal",)),
        ("mlp.proj.weight", (d, f), ("zeros",)),
    ]
    for suffix, shape, init in banks:
        for i in range(L):
            t.append((f"blocks.{i}.{suffix}", shape, init, "matrix"))
    return t


def orthogonal(rows, cols, rng):
    """Uniformly distributed (semi-)orthogonal rows x cols matrix (float64 numpy):
    rows orthonormal if rows <= cols, else columns orthonormal. QR of a Gaussian with the
    signs of R's diagonal moved into Q."""
    big, small = max(rows, cols), min(rows, cols)
    a = rng.standard_normal((big, small))
    q, r = np.linalg.qr(a)  # q: big x small, orthonormal columns
    s = np.sign(np.diag(r))
    s[s == 0] = 1.0
    q = q * s[None, :]
    return q if rows >= cols else q.T


def init_params(cfg, seed):
    """dict name -> float32 tensor, following the table's inits, drawn in table order from
    numpy.random.RandomState(seed)."""
    rng = np.random.RandomState(seed)
    out = {}
    for name, shape, init, _ in param_table(cfg):
        kind = init[0]
        if kind == "normal":
            a = rng.standard_normal(shape) * init[1]
        elif kind == "zeros":
            a = np.zeros(shape)
        elif kind == "ones":
            a = np.ones(shape)
        elif kind == "const":
            a = np.full(shape, init[1])
        elif kind == "resid_mix":
            a = np.zeros(shape)
            a[0] = 1.0
        elif kind == "orthogonal":
            a = orthogonal(shape[0], shape[1], rng)
        else:
            raise AssertionError(kind)
        out[name] = torch.from_numpy(np.asarray(a, dtype=np.float32).reshape(shape).copy())
    return out


# --------------------------------------------------------------------------------------
# Forward pass
# --------------------------------------------------------------------------------------

def rms(x):
    return x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + RMS_EPS)


def _wrap_int32(x):
    """int64 tensor -> the same value wrapped to 32-bit two's complement (still int64)."""
    return torch.remainder(x + 2 ** 31, 2 ** 32) - 2 ** 31


def bigram_hash(ids, vb):
    """ids [B, T] integer -> [B, T] int64 hash buckets in [0, vb)."""
    ids = ids.long()
    cur = _wrap_int32(36313 * ids[:, 1:])
    prev = _wrap_int32(27191 * ids[:, :-1])
    h = torch.remainder(torch.bitwise_xor(cur, prev), vb - 1)
    first = torch.full_like(ids[:, :1], vb - 1)
    return torch.cat([first, h], dim=1)


def rope_tables(cfg, length, dtype):
    """cos, sin [length, r/2]: angles computed in float64, then rounded to dtype."""
    r = cfg["rope"]["dims"]
    base = float(cfg["rope"]["base"])
    T = cfg["seq_len"]
    t_rope = cfg["rope"]["train_len"]
    if T > t_rope:
        base = base * (T / t_rope) ** (r / (r - 2))
    j = torch.arange(r // 2, dtype=torch.float64)
    inv_freq = base ** (-2.0 * j / r)
    pos = torch.arange(length, dtype=torch.float64)
    theta = pos[:, None] * inv_freq[None, :]
    return torch.cos(theta).to(dtype), torch.sin(theta).to(dtype)


def apply_rope(x, cos, sin, r):
    """x [B, T, heads, hd]; rotates the first r dims of every head."""
    if r == 0:
        return x
    half = r // 2
    a, b, rest = x[..., :half], x[..., half:r], x[..., r:]
    c = cos[None, :, None, :]
    s = sin[None, :, None, :]
    return torch.cat([a * c + b * s, -a * s + b * c, rest], dim=-1)


def layer_schedule(cfg, recurrence_active):
    vl = list(cfg["recurrence"]["virtual_layers"])
    if recurrence_active and vl:
        return vl
    return list(range(cfg["num_layers"]))


def forward(params, cfg, ids, recurrence_active=False, dtype=torch.float32, return_hidden=False):
    """logits [B, T, V] for ids [B, T]; every computation in `dtype`.

    return_hidden=True returns instead the stream entering the final norm, [B, T, d] (the
    input of the head; docs/eval.md SLOT `before_norm`)."""
    D = dims(cfg)
    V, L, d, H, Hkv, hd, n_skip = D["V"], D["L"], D["d"], D["H"], D["Hkv"], D["hd"], D["n_skip"]
    P = {k: v.to(dtype) for k, v in params.items()}
    ids = ids.long()
    B, Tw = ids.shape
    r = cfg["rope"]["dims"]
    cos, sin = rope_tables(cfg, Tw, dtype)
    causal = torch.ones(Tw, Tw, dtype=torch.bool).tril()
    group = H // Hkv
    xsa_from = L - cfg["xsa_last_n"]
    ve_cfg = cfg["value_embed"]
    ve_pos = {}
    if ve_cfg["enabled"]:
        for k, layer in enumerate(ve_cfg["layers"]):
            ve_pos.setdefault(layer, k)
        ve_mat = P["ve_shared.embed.weight"][ids] @ P["ve_shared.proj.weight"].t()  # [B,T,kvd]

    # 1-4: embedding, rms, smear
    e = P["tok_emb.weight"][ids]
    if cfg["bigram"]["enabled"]:
        h = bigram_hash(ids, cfg["bigram"]["vocab_size"])
        e = e + P["bigram.scale"] * (P["bigram.embed.weight"][h] @ P["bigram.proj.weight"].t())
    e = rms(e)
    if cfg["smear_gate"]:
        g = torch.sigmoid(P["smear.gate"])
        prev = F.pad(e[:, :-1], (0, 0, 1, 0))
        e = (1 - g) * e + g * prev
    x0 = e

    def attn(i, u):
        pre = f"blocks.{i}.attn."
        q = (u @ P[pre + "c_q.weight"].t()).view(B, Tw, H, hd)
        k = (u @ P[pre + "c_k.weight"].t()).view(B, Tw, Hkv, hd)
        v = u @ P[pre + "c_v.weight"].t()
        if i in ve_pos:
            kk = ve_pos[i]
            v = v + (P["ve_shared.scale"] * P[f"ve_layer_scales.{kk}"]) * ve_mat
        v = v.view(B, Tw, Hkv, hd)
        q = apply_rope(rms(q), cos, sin, r)
        k = apply_rope(rms(k), cos, sin, r)
        q = q * P[pre + "q_gain"].view(1, 1, H, 1)
        qh = q.permute(0, 2, 1, 3)                                   # B,H,T,hd
        kh = k.permute(0, 2, 1, 3).repeat_interleave(group, dim=1)   # B,H,T,hd
        vh = v.permute(0, 2, 1, 3).repeat_interleave(group, dim=1)
        scores = (qh @ kh.transpose(-1, -2)) / math.sqrt(hd)         # B,H,T,T
        scores = scores.masked_fill(~causal, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ vh                       # B,H,T,hd
        if i >= xsa_from:
            norm = torch.linalg.vector_norm(vh, dim=-1, keepdim=True)
            vhat = vh / torch.clamp(norm, min=XSA_NORM_FLOOR)
            y = y - (y * vhat).sum(dim=-1, keepdim=True) * vhat
        y = y.permute(0, 2, 1, 3).reshape(B, Tw, H * hd)
        return y @ P[pre + "proj.weight"].t()

    def mlp(i, u):
        z = F.leaky_relu(u @ P[f"blocks.{i}.mlp.fc.weight"].t(), cfg["leaky_relu_slope"])
        return (z * z) @ P[f"blocks.{i}.mlp.proj.weight"].t()

    def s_of(i):
        return 1.0 / math.sqrt(i + 1) if cfg["ln_scale"] else 1.0

    def block(i, x):
        mix = P[f"blocks.{i}.resid_mix"]
        xin = mix[0] * x + mix[1] * x0
        x = xin + P[f"blocks.{i}.attn_scale"] * attn(i, rms(xin) * s_of(i))
        return x + P[f"blocks.{i}.mlp_scale"] * mlp(i, rms(x) * s_of(i))

    def parallel_block(i, lane0, lane1):
        mix = P[f"blocks.{i}.resid_mix"]
        m0 = mix[0] * lane0 + mix[1] * x0
        lane0 = m0 + P[f"blocks.{i}.attn_scale"] * attn(i, rms(m0) * s_of(i))
        lane1 = lane1 + P[f"blocks.{i}.mlp_scale"] * mlp(i, rms(lane1) * s_of(i))
        return lane0, lane1

    def skip(t, k, s):
        w = P["skip_weights"][k]
        if cfg["sigmoid_skip_gates"]:
            g = torch.sigmoid(P["skip_gates"][k])
            return g * t + (1 - g) * (w * s)
        return t + w * s

    layers = layer_schedule(cfg, recurrence_active)
    n_enc = len(layers) // 2
    skip_policy = cfg["recurrence"]["skip_policy"]
    par_start = cfg["parallel_residual"]["start_layer"]
    lane_policy = cfg["parallel_residual"]["skip_policy"]
    stack = []
    x = x0
    lanes = None
    for step, i in enumerate(layers):
        if step >= n_enc:
            j = step - n_enc
            if stack and n_skip > 0:
                if skip_policy == "clamp":
                    k = min(j, n_skip - 1)
                else:
                    k = j if j < n_skip else None
                if k is not None:
                    s = stack.pop()
                    if lanes is None:
                        x = skip(x, k, s)
                    elif lane_policy == "both_lanes":
                        lanes = (skip(lanes[0], k, s), skip(lanes[1], k, s))
                    # dead_x: the skip goes to the abandoned x, i.e. to nothing
            if lanes is None and par_start >= 0 and i >= par_start:
                lanes = (x, x)
        if lanes is None:
            x = block(i, x)
        else:
            lanes = parallel_block(i, *lanes)
        if step < n_enc:
            stack.append(x)
    if lanes is not None:
        m = P["lane_merge"]
        x = m * lanes[0] + (1 - m) * lanes[1]
    if return_hidden:
        return x

    hfin = rms(x)
    w = P["tok_emb.weight"] if cfg["tie_embeddings"] else P["lm_head.weight"]
    z = hfin @ w.t()
    c = cfg["logit_softcap"]
    if c > 0:
        z = c * torch.tanh(z / c)
    return z


def loss(logits, targets):
    """Mean over all positions of logsumexp(logits) - logits[target]."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long())


def token_nll(logits, targets):
    """Per-position NLL [B, T]."""
    return torch.logsumexp(logits, dim=-1) - logits.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)


# --------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------

_ST_DTYPES = {
    "F64": (torch.float64, "<f8", 8), "F32": (torch.float32, "<f4", 4),
    "F16": (torch.float16, "<f2", 2), "BF16": (torch.bfloat16, "<i2", 2),
    "I64": (torch.int64, "<i8", 8), "I32": (torch.int32, "<i4", 4),
    "I16": (torch.int16, "<i2", 2), "I8": (torch.int8, "i1", 1),
    "U8": (torch.uint8, "u1", 1), "BOOL": (torch.bool, "?", 1),
}
_TORCH_TO_ST = {v[0]: k for k, v in _ST_DTYPES.items()}


SHARD_MAGIC = 20240520


def read_shard(path):
    """A challenge token shard (SPEC 2.1) as int64 token ids."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 1024:
        raise ValueError(f"{path}: shorter than the 1024-byte shard header")
    header = struct.unpack("<256i", raw[:1024])
    if header[0] != SHARD_MAGIC or header[1] != 1:
        raise ValueError(f"{path}: not a token shard (magic {header[0]}, version {header[1]})")
    n = header[2]
    if len(raw) != 1024 + 2 * n:
        raise ValueError(f"{path}: size {len(raw)} != 1024 + 2 * {n}")
    return np.frombuffer(raw, dtype="<u2", count=n, offset=1024).astype(np.int64)


def read_config_json(path_or_dict):
    """A resolved pgolf config (dict or file); refuses unresolved "extends"."""
    if isinstance(path_or_dict, dict):
        raw = path_or_dict
    else:
        with open(path_or_dict, "r", encoding="utf-8") as f:
            raw = json.load(f)
    if "extends" in raw:
        raise ValueError("config uses 'extends'; resolve it with `pgolf inspect config FILE` first")
    return raw


def _tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    code = _TORCH_TO_ST[t.dtype]
    return t.numpy().astype(_ST_DTYPES[code][1], copy=False).tobytes()


def save(path, tensors, metadata=None):
    """Write tensors (dict name -> torch tensor, written in dict order) and string
    metadata as safetensors. The header is padded with spaces to a multiple of 8 bytes."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in _TORCH_TO_ST:
            raise ValueError(f"{name}: unsupported dtype {t.dtype}")
        data = _tensor_bytes(t)
        header[name] = {"dtype": _TORCH_TO_ST[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def load(path):
    """(tensors, metadata) from a safetensors file; tensors in file (offset) order."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for safetensors")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} beyond end of file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    entries = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    pos = 0
    tensors = {}
    for name, info in entries:
        code = info["dtype"]
        if code not in _ST_DTYPES:
            raise ValueError(f"{path}: {name}: unsupported dtype {code}")
        tdtype, npdtype, size = _ST_DTYPES[code]
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        numel = int(np.prod(shape)) if shape else 1
        if begin != pos or end - begin != numel * size:
            raise ValueError(f"{path}: {name}: data offsets do not tile the data section")
        arr = np.frombuffer(data, dtype=npdtype, count=numel, offset=begin).reshape(shape)
        t = torch.from_numpy(arr.copy())
        tensors[name] = t.view(torch.bfloat16) if code == "BF16" else t
        pos = end
    if pos != len(data):
        raise ValueError(f"{path}: data section has {len(data) - pos} trailing bytes")
    return tensors, metadata


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------

def check_golden(path):
    """Recompute a golden file with the twin; returns the max abs differences."""
    tensors, meta = load(path)
    cfg = load_config(json.loads(meta["config"]))
    active = meta["recurrence_active"] == "true"
    ids, targets = tensors["input.ids"], tensors["input.targets"]
    params = {name: tensors["param." + name].to(torch.float64).requires_grad_(True)
              for name, _, _, _ in param_table(cfg)}
    logits = forward(params, cfg, ids, active, torch.float64)
    lo = loss(logits, targets)
    lo.backward()
    res = {
        "logits": (logits - tensors["f64.logits"]).abs().max().item(),
        "loss": abs(lo.item() - tensors["f64.loss"].item()),
        "grad": max((params[n].grad - tensors["f64.grad." + n]).abs().max().item()
                    for n in params),
    }
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch twin of pgolf's model")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("table", help="print the parameter table of a config")
    p.add_argument("config")
    p = sub.add_parser("check-golden", help="recompute golden files and print max differences")
    p.add_argument("files", nargs="+")
    p = sub.add_parser("hash", help="BigramHash bucket of (prev, cur) pairs")
    p.add_argument("vb", type=int)
    p.add_argument("pairs", type=int, nargs="+", help="prev cur prev cur ...")
    args = ap.parse_args(argv)
    if args.cmd == "table":
        cfg = load_config(args.config)
        total = 0
        for name, shape, init, group in param_table(cfg):
            n = int(np.prod(shape)) if shape else 1
            total += n
            print(f"{name:32s} {str(list(shape)):14s} {group:7s} {init}")
        print(f"total {total}")
    elif args.cmd == "check-golden":
        ok = True
        for path in args.files:
            res = check_golden(path)
            good = res["logits"] < 1e-12 and res["loss"] < 1e-12 and res["grad"] < 1e-12
            ok &= good
            print(json.dumps({"file": path, **res, "ok": good}))
        return 0 if ok else 1
    elif args.cmd == "hash":
        if len(args.pairs) % 2:
            ap.error("pairs must come as prev cur")
        ids = torch.tensor(args.pairs, dtype=torch.int64).view(-1, 2)
        print(bigram_hash(ids, args.vb)[:, 1].tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())
