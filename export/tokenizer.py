"""A small CLIP tokenizer generated offline (no hub): byte-level characters, no merges.

Tiny random text encoders need a real CLIPTokenizer to go through the same loading code as
the released checkpoints; a character-level vocabulary is the smallest one that tokenises
any prompt.
"""
import json
from pathlib import Path

from transformers.convert_slow_tokenizer import bytes_to_unicode

SPECIAL_TOKENS = ["<|startoftext|>", "<|endoftext|>"]


def write_tiny_clip_tokenizer(out_dir: Path, model_max_length: int = 77) -> int:
    """Write vocab.json, merges.txt and tokenizer_config.json; return the vocabulary size."""
    out_dir.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + SPECIAL_TOKENS
    vocab = {tok: i for i, tok in enumerate(tokens)}
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n")
    (out_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": SPECIAL_TOKENS[0],
        "eos_token": SPECIAL_TOKENS[1],
        "unk_token": SPECIAL_TOKENS[1],
        "pad_token": SPECIAL_TOKENS[1],
    }))
    return len(vocab)
