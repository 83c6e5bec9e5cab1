"""Tokenizers a split text model is trained with, each one a ``tokenizer.json`` the device loads too.

The device tokenizes with the ``tokenizers`` library from the bundle's ``device/tokenizer.json``
(no torch, no transformers there), so the torch side tokenizes through the same library and
the same file: what the model was trained on is what a device sends.

- :class:`HFTokenizer`: a Hugging Face model's own ``tokenizer.json``.
- :class:`ByteTokenizer`: for a ``module:factory`` encoder without one: UTF-8 bytes + 3
  (0 pad, 1 start, 2 end), written as a ``tokenizer.json`` (byte-level BPE with no merges).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = ["ByteTokenizer", "HFTokenizer", "Tokenizer", "byte_tokenizer_json"]


class Tokenizer(Protocol):
    max_tokens: int

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, mask), both (B, T) int64, padded to the longest text."""
        ...

    def json(self) -> str:
        """The ``tokenizer.json`` a device loads to tokenize exactly so."""
        ...


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map, which ``tokenizers``' ByteLevel pre-tokenizer uses."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return chars


def byte_tokenizer_json() -> str:
    """A ``tokenizer.json``: id = UTF-8 byte + 3, framed by 1 (start) and 2 (end); 0 pads."""
    vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2}
    vocab.update({char: byte + 3 for byte, char in _bytes_to_unicode().items()})
    special = [{"id": i, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True} for name, i in list(vocab.items())[:3]]
    spec = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": special, "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                          "use_regex": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {name: {"id": name, "ids": [i], "tokens": [name]}
                               for name, i in list(vocab.items())[1:3]},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": []},
    }
    return json.dumps(spec, ensure_ascii=False)


class HFTokenizer:
    """A ``tokenizer.json`` through the ``tokenizers`` library (the device uses the same file)."""

    def __init__(self, text: str, max_tokens: int = 64, pad_id: int = 0, path: Path | None = None) -> None:
        from tokenizers import Tokenizer as _Tokenizer

        self.text = text
        self.path = path
        self.max_tokens = max_tokens
        self.pad_id = pad_id
        self.tokenizer = _Tokenizer.from_str(text)
        self.tokenizer.enable_truncation(max_tokens)
        self.tokenizer.enable_padding(pad_id=pad_id)

    @classmethod
    def from_file(cls, path: Path, max_tokens: int = 64) -> HFTokenizer:
        return cls(path.read_text(encoding="utf-8"), max_tokens, path=path)

    def json(self) -> str:
        return self.text

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encoded = self.tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encoded], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encoded], dtype=np.int64)
        return ids, mask


class ByteTokenizer(HFTokenizer):
    """UTF-8 bytes + 3 (0 pad, 1 start, 2 end): the fallback for a factory without a tokenizer."""

    vocab_size = 259

    def __init__(self, max_tokens: int = 64) -> None:
        super().__init__(byte_tokenizer_json(), max_tokens)
