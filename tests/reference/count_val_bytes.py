#!/usr/bin/env python3
"""Independent reference for SPEC 2.3 byte counting, written against the sentencepiece
Python package (Debian: python3-sentencepiece), not against pgolf's C++.

Prints the number of bytes of all targets t = 1..n-1 of a token shard, and of the stream
trimmed to ((n-1)//seq_len)*seq_len + 1 tokens as the records do. The numbers it prints for
the bundled val shard are asserted by tests/data/test_tokenizer_bpb.cpp; rerun it after
changing the bundled data:

    /usr/bin/python3 tests/reference/count_val_bytes.py \
        data/tokenizers/fineweb_1024_bpe.model data/fineweb_mini_sp1024/fineweb_val_000000.bin
"""
import argparse
import struct

import sentencepiece as spm


def read_shard(path):
    with open(path, "rb") as f:
        data = f.read()
    header = struct.unpack("<256i", data[:1024])
    assert header[0] == 20240520 and header[1] == 1, "not a token shard"
    n = header[2]
    assert len(data) == 1024 + 2 * n, "size mismatch"
    return list(struct.unpack(f"<{n}H", data[1024:]))


def byte_tables(sp, vocab_size):
    size = max(sp.get_piece_size(), vocab_size)
    base = [0] * size
    lead = [False] * size
    boundary = [True] * size
    for i in range(sp.get_piece_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            lead[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return base, lead, boundary


def target_bytes(tokens, tables):
    base, lead, boundary = tables
    return sum(base[y] + (1 if lead[y] and not boundary[x] else 0) for x, y in zip(tokens[:-1], tokens[1:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("shard")
    ap.add_argument("--seq-len", type=int, default=2048)
    args = ap.parse_args()
    sp = spm.SentencePieceProcessor(model_file=args.model)
    tokens = read_shard(args.shard)
    tables = byte_tables(sp, sp.get_piece_size())
    trimmed = tokens[: ((len(tokens) - 1) // args.seq_len) * args.seq_len + 1]
    print(f"tokens {len(tokens)}")
    print(f"target_bytes {target_bytes(tokens, tables)}")
    print(f"trimmed_tokens {len(trimmed)}")
    print(f"trimmed_target_bytes {target_bytes(trimmed, tables)}")


if __name__ == "__main__":
    main()
