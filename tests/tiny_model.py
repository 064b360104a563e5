#!/usr/bin/env python3
"""Write a tiny random-weight llama model as GGUF, for tests against a real llama-server.

Its vocabulary and tokenizer come from a vocab-only GGUF that ships with llama.cpp
(models/ggml-vocab-llama-spm.gguf); the weights are random, one layer of width 64, so it loads
in well under a second and generates nonsense quickly on a CPU. What tests need is the server's
behaviour around requests (/metrics, /props, /slots, sleeping), not sensible text.

  python tests/tiny_model.py VOCAB.gguf OUT.gguf
"""

from __future__ import annotations

import sys
from pathlib import Path

import gguf
import numpy as np

EMBEDDING, LAYERS, HEADS, FEED_FORWARD, CONTEXT = 64, 1, 4, 128, 2048


def field_value(reader: gguf.GGUFReader, key: str) -> object:
    field = reader.fields[key]
    if field.types[0] == gguf.GGUFValueType.ARRAY:
        if field.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]
        return [field.parts[i][0].item() for i in field.data]
    if field.types[0] == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode()
    return field.parts[field.data[0]][0].item()


def write(vocab_path: Path, out: Path, seed: int = 0) -> None:
    vocab = gguf.GGUFReader(vocab_path)
    tokens = field_value(vocab, "tokenizer.ggml.tokens")
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name("sleepyllama-tiny")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBEDDING)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(EMBEDDING // HEADS)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model(field_value(vocab, "tokenizer.ggml.model"))
    writer.add_tokenizer_pre(field_value(vocab, "tokenizer.ggml.pre"))
    writer.add_token_list(tokens)
    writer.add_token_scores(field_value(vocab, "tokenizer.ggml.scores"))
    writer.add_token_types(field_value(vocab, "tokenizer.ggml.token_type"))
    writer.add_bos_token_id(field_value(vocab, "tokenizer.ggml.bos_token_id"))
    writer.add_eos_token_id(field_value(vocab, "tokenizer.ggml.eos_token_id"))
    writer.add_unk_token_id(field_value(vocab, "tokenizer.ggml.unknown_token_id"))
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)

    random = np.random.default_rng(seed)

    def tensor(name: str, *shape: int) -> None:
        # numpy's shape is GGUF's dimensions reversed: (rows, columns) = (outputs, inputs)
        writer.add_tensor(name, (random.standard_normal(shape) * 0.02).astype(np.float32))

    tensor("token_embd.weight", len(tokens), EMBEDDING)
    for layer in range(LAYERS):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(f"{block}.{part}.weight", EMBEDDING, EMBEDDING)
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
        tensor(f"{block}.ffn_gate.weight", FEED_FORWARD, EMBEDDING)
        tensor(f"{block}.ffn_up.weight", FEED_FORWARD, EMBEDDING)
        tensor(f"{block}.ffn_down.weight", EMBEDDING, FEED_FORWARD)
    writer.add_tensor("output_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
    tensor("output.weight", len(tokens), EMBEDDING)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    write(Path(sys.argv[1]), Path(sys.argv[2]))
