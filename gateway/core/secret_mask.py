"""Masking the secrets a config holds in what the gateway shows or stores.

A provider may echo the key it was sent — in an error body (``Incorrect API key provided:
sk-proj-…abcd``), cut, without its prefix, or even in a successful answer. ``SecretMasker`` is
built once per config (``Runtime.secrets``) from the backends' keys and header values and
offers three costs:

- ``mask(data)``: whole secrets in bytes (one C-level search per secret);
- ``mask_text(text)``: the same for ``str`` (rows, spans);
- ``mask_runs(data)``: any run of ``MIN_RUN`` or more characters of a secret — for upstream
  error bodies and in-band error events of streams, which are small and rare. A run of 8
  contains an aligned 4-character window at a multiple of 4, so the body is probed every 4
  bytes against the secrets' 4-grams and only around a hit are its 8-grams checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

MIN_RUN = 8
MASK = b"***"


class SecretMasker:
    """The secrets of one config (each at least ``MIN_RUN`` characters), ready to mask."""

    __slots__ = ("secrets", "_texts", "_grams4", "_grams8")

    def __init__(self, secrets: Iterable[str]):
        texts = sorted({s for s in secrets if s and len(s) >= MIN_RUN}, key=len, reverse=True)
        self._texts = tuple(texts)
        self.secrets = tuple(s.encode() for s in texts)
        self._grams8 = frozenset(b[i:i + MIN_RUN] for b in self.secrets for i in range(len(b) - MIN_RUN + 1))
        self._grams4 = frozenset(g[j:j + 4] for g in self._grams8 for j in range(0, MIN_RUN - 3))

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.secrets)

    def mask(self, data: bytes) -> bytes:
        """``data`` with every whole secret replaced by ``***``."""
        for secret in self.secrets:
            if secret in data:
                data = data.replace(secret, MASK)
        return data

    def mask_text(self, text: str) -> str:
        """``text`` with every whole secret replaced by ``***``."""
        for secret in self._texts:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def mask_error_runs(self, data: bytes) -> bytes:
        """``mask_runs`` for a read of a relayed stream that mentions an error (an in-band error
        event: ``{"error": …}``, ``event: error``); other reads are returned as they are."""
        return self.mask_runs(data) if b"error" in data else data

    def mask_runs(self, data: bytes) -> bytes:
        """``data`` with every run of ``MIN_RUN``+ bytes that appears in a secret replaced by
        ``***`` (whole secrets, cut ones, ones without their prefix)."""
        n = len(data)
        grams8 = self._grams8
        if n < MIN_RUN or not grams8:
            return data
        grams4 = self._grams4
        spans: list[list[int]] = []
        checked = -1  # 8-gram starts up to here are done
        for k in range(0, n - 3, 4):
            if data[k:k + 4] not in grams4:
                continue
            # every 8-byte window holding [k, k+4) starts in [k-4, k]
            for i in range(max(k - 4, checked + 1), min(k, n - MIN_RUN) + 1):
                if data[i:i + MIN_RUN] in grams8:
                    if spans and i <= spans[-1][1]:
                        spans[-1][1] = i + MIN_RUN
                    else:
                        spans.append([i, i + MIN_RUN])
            checked = max(checked, k)
        if not spans:
            return data
        out, pos = [], 0
        for start, end in spans:
            out.append(data[pos:start])
            out.append(MASK)
            pos = end
        out.append(data[pos:])
        return b"".join(out)


def backend_secrets(backends: Mapping[str, Any]) -> SecretMasker:
    """The masker of a config's ``backends`` (their keys and header values): what the serving
    process masks in relayed errors and the ingester in stored bodies and messages."""
    return SecretMasker(v for b in backends.values() for v in (b.api_key, *b.headers.values()) if v)
