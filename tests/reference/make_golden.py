#!/usr/bin/env python3
"""Regenerate the committed model goldens in tests/reference/golden/ with the PyTorch twin.

    /usr/bin/python3 tests/reference/make_golden.py [--out tests/reference/golden]

Each golden_v1 file holds a tiny config, random inputs, random (non-init) parameters and
the twin's float64 logits, loss and parameter gradients (see README.md). The output is
deterministic: rerunning gives the same bytes.
"""
import argparse
import copy
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin  # noqa: E402

B, T = 2, 16

ALL_OPTIONS = {
    "vocab_size": 64,
    "num_layers": 6,
    "model_dim": 24,
    "num_heads": 4,
    "num_kv_heads": 2,
    "mlp_mult": 2.5,
    "leaky_relu_slope": 0.5,
    "seq_len": 16,
    "rope": {"dims": 4, "base": 10000.0, "train_len": 8},
    "qk_gain_init": 1.5,
    "logit_softcap": 10.0,
    "tie_embeddings": False,
    "ln_scale": True,
    "xsa_last_n": 2,
    "bigram": {"enabled": True, "vocab_size": 37, "dim": 8},
    "smear_gate": True,
    "value_embed": {"enabled": True, "dim": 8, "layers": [4, 5]},
    "sigmoid_skip_gates": True,
    "recurrence": {"virtual_layers": [0, 1, 2, 3, 2, 3, 4, 5], "skip_policy": "clamp"},
    "parallel_residual": {"start_layer": 4, "skip_policy": "both_lanes"},
}


def _with(base, **changes):
    out = copy.deepcopy(base)
    for path, value in changes.items():
        node = out
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return out


# (name, model section, recurrence active, seed)
CASES = [
    ("all_options", ALL_OPTIONS, True, 101),
    ("record_quirks", _with(ALL_OPTIONS, tie_embeddings=True,
                            recurrence__skip_policy="none_beyond",
                            parallel_residual__skip_policy="dead_x"), True, 102),
    ("pr549_like", {
        "vocab_size": 64,
        "num_layers": 4,
        "model_dim": 24,
        "num_heads": 4,
        "num_kv_heads": 2,
        "mlp_mult": 3.0,
        "seq_len": 16,
        "rope": {"dims": 4, "train_len": 8},
        "logit_softcap": 30.0,
        "tie_embeddings": True,
        "xsa_last_n": 2,
        "bigram": {"vocab_size": 37, "dim": 8},
        "smear_gate": True,
        "value_embed": {"dim": 8, "layers": [2, 3]},
        "sigmoid_skip_gates": False,
        "recurrence": {"virtual_layers": []},
        "parallel_residual": {"start_layer": -1},
    }, False, 103),
    # In record_quirks the split happens at decoder step j = 2 and none_beyond gives step
    # j = 3 no skip, so dead_x changes nothing there; this case (clamp: step 3 reuses skip 2)
    # is the one where the dead_x quirk is visible.
    ("dead_x", _with(ALL_OPTIONS, parallel_residual__skip_policy="dead_x"), True, 101),
]


def random_params(cfg, rng):
    """Random values (not the init) so that every path has non-zero gradients."""
    out = {}
    for name, shape, init, group in twin.param_table(cfg):
        n = lambda: rng.standard_normal(shape)  # noqa: E731
        if name in ("tok_emb.weight", "bigram.embed.weight", "ve_shared.embed.weight"):
            a = 0.5 * n()
        elif group == "matrix" or name.endswith("proj.weight") or name == "lm_head.weight":
            a = n() / np.sqrt(shape[1])
        elif name.endswith("resid_mix"):
            a = n()
            a[0] = 1.0 + 0.2 * a[0]
            a[1] = 0.3 * a[1]
        elif name in ("smear.gate", "skip_gates"):
            a = 0.5 * n()
        elif name.endswith("q_gain"):
            a = cfg["qk_gain_init"] + 0.2 * n()
        elif name == "lane_merge":
            a = 0.5 + 0.1 * n()
        elif name in ("bigram.scale", "ve_shared.scale") or name.startswith("ve_layer_scales."):
            a = 0.5 + 0.1 * n()
        elif name in ("skip_weights",) or name.endswith("attn_scale") or name.endswith("mlp_scale"):
            a = 1.0 + 0.2 * n()
        else:
            raise AssertionError(f"no random rule for {name}")
        out[name] = torch.from_numpy(np.asarray(a, dtype=np.float32).reshape(shape).copy())
    return out


def make_case(name, model, active, seed):
    cfg = twin.load_config({"model": model})
    rng = np.random.RandomState(seed)
    V = cfg["vocab_size"]
    ids = rng.randint(0, V, size=(B, T)).astype(np.int32)
    targets = rng.randint(0, V, size=(B, T)).astype(np.int32)
    ids[0, 0] = 1
    ids[1, 9] = 1
    params = random_params(cfg, rng)
    ids_t, tgt_t = torch.from_numpy(ids), torch.from_numpy(targets)

    p64 = {k: v.to(torch.float64).requires_grad_(True) for k, v in params.items()}
    logits64 = twin.forward(p64, cfg, ids_t, active, torch.float64)
    loss64 = twin.loss(logits64, tgt_t)
    loss64.backward()
    with torch.no_grad():
        loss32 = twin.loss(twin.forward(params, cfg, ids_t, active, torch.float32), tgt_t)

    tensors = {"input.ids": ids_t, "input.targets": tgt_t}
    for k, v in params.items():
        tensors["param." + k] = v
    tensors["f64.logits"] = logits64.detach()
    tensors["f64.loss"] = loss64.detach().reshape(())
    for k, v in p64.items():
        g = v.grad if v.grad is not None else torch.zeros_like(v)
        tensors["f64.grad." + k] = g.detach()
    tensors["f32.loss"] = loss32.detach().reshape(()).to(torch.float32)
    metadata = {
        "golden_version": "1",
        "generator": "tests/reference/make_golden.py",
        "config": json.dumps({"model": cfg}),
        "recurrence_active": "true" if active else "false",
        "batch": str(B),
    }
    zero_grads = [k for k, v in p64.items() if v.grad is None or not bool((v.grad != 0).any())]
    return tensors, metadata, loss64.item(), loss32.item(), zero_grads


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    for name, model, active, seed in CASES:
        tensors, metadata, l64, l32, zero = make_case(name, model, active, seed)
        path = os.path.join(args.out, f"model_v1_{name}.safetensors")
        twin.save(path, tensors, metadata)
        n_params = sum(1 for k in tensors if k.startswith("param."))
        print(f"{path}: {os.path.getsize(path)} bytes, {n_params} params, "
              f"recurrence_active={metadata['recurrence_active']}, "
              f"loss f64 {l64:.17g} f32 {l32:.9g}, params with all-zero grad: {zero or 'none'}")


if __name__ == "__main__":
    main()
