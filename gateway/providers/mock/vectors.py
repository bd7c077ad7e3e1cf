"""The mock's embeddings: deterministic vectors in which texts that share words lie close.

Each word (lower-cased; its plural ``s`` dropped) is hashed to a slot and a sign, and a text's
vector is the normalised sum of its words' — feature hashing, a bag of words. So the same text
always gets the same vector, rewordings that keep most words are near (cosine distance well
under 0.2), and texts without common words are near-orthogonal (about 1). That is enough for
tests of retrieval and the semantic cache to tell a near question from a different one without a
real model. An input with no word (token ids, punctuation) gets a vector hashed from its whole
JSON, as before.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import orjson

_WORD = re.compile(r"[^\W_]+")


def _slot(word: str, dims: int) -> tuple[int, float]:
    h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
    return h % dims, 1.0 if (h >> 63) & 1 else -1.0


def _words(text: str) -> list[str]:
    out = []
    for w in _WORD.findall(text.lower()):
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out


def _whole(item: Any, dims: int) -> list[float]:
    material = orjson.dumps(item)
    digest = hashlib.blake2b(material, digest_size=dims).digest() if dims <= 64 \
        else hashlib.shake_256(material).digest(dims)
    return [b / 255 - 0.5 for b in digest]


def embed(item: Any, dims: int) -> list[float]:
    """The unit vector of ``item`` (a string, or anything JSON) with ``dims`` components."""
    words = _words(item) if isinstance(item, str) else []
    if not words:
        return _whole(item, dims)
    vector = [0.0] * dims
    for w in words:
        i, sign = _slot(w, dims)
        vector[i] += sign
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:  # the words cancelled out in their slots
        return _whole(item, dims)
    return [x / norm for x in vector]
