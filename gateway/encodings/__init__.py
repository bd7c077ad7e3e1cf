"""The tiktoken encodings the gateway counts with, shipped with the package.

tiktoken downloads its BPE files from the internet on first use, which fails on air-gapped
machines and many CI runners. The two encodings the gateway uses (``o200k_base`` and
``cl100k_base``) ship here as package data (``*.tiktoken``, the files tiktoken itself
downloads) and load without network access, cache folder or environment variable.

``load(name)`` builds the encoding with tiktoken's own definition (its pattern and special
tokens, from ``tiktoken_ext.openai_public``) but with the BPE ranks read from the packaged file
and checked against the SHA-256 that definition expects. Nothing global changes: tiktoken's
registry, its cache folder and the process environment are left alone, so other libraries that
use tiktoken behave as before. Encodings are built once per process and shared.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import types
from importlib.resources import files
from typing import Any

PACKAGED = ("o200k_base", "cl100k_base")
_LOCK = threading.Lock()
_LOADED: dict[str, Any] = {}


class PackagedEncodingError(RuntimeError):
    """A packaged encoding is missing, corrupt, or tiktoken's definition cannot use it."""


def _packaged_ranks(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """Stands in for ``tiktoken.load.load_tiktoken_bpe``: the ranks of the packaged copy of ``url``."""
    filename = url.rsplit("/", 1)[-1]
    resource = files(__package__) / filename
    if not filename.endswith(".tiktoken") or not resource.is_file():
        raise PackagedEncodingError(f"{filename} is not shipped with the package")
    data = resource.read_bytes()
    if expected_hash and hashlib.sha256(data).hexdigest() != expected_hash:
        raise PackagedEncodingError(f"packaged {filename} does not match tiktoken's SHA-256 {expected_hash}")
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _build(name: str):
    import tiktoken
    from tiktoken_ext import openai_public

    constructor = openai_public.ENCODING_CONSTRUCTORS[name]
    if "load_tiktoken_bpe" not in constructor.__code__.co_names:
        raise PackagedEncodingError(f"tiktoken {tiktoken.__version__} builds {name} in a way this gateway "
                                    "does not know; cannot use the packaged file")
    # The same constructor with its loader bound to the packaged file: tiktoken's own pattern
    # and special tokens for this tiktoken version, no download, nothing patched.
    local = types.FunctionType(constructor.__code__, {**constructor.__globals__, "load_tiktoken_bpe": _packaged_ranks},
                               constructor.__name__, constructor.__defaults__, constructor.__closure__)
    return tiktoken.Encoding(**local())


def load(name: str):
    """The ``tiktoken.Encoding`` ``name`` (one of ``PACKAGED``) from the packaged BPE file.

    Raises ``PackagedEncodingError`` (or ``ImportError`` without tiktoken) when it cannot."""
    if name not in PACKAGED:
        raise PackagedEncodingError(f"{name} is not shipped with the package (shipped: {', '.join(PACKAGED)})")
    enc = _LOADED.get(name)
    if enc is None:
        with _LOCK:
            enc = _LOADED.get(name)
            if enc is None:
                enc = _LOADED[name] = _build(name)
    return enc
