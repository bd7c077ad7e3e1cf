"""Keeping secrets out of what the gateway stores and shows: key-like substrings masked in free
text (error messages, log lines, dashboard and CLI output) and a client's key reduced to a
fingerprint. Used by telemetry rows, logs, the admin API, the dashboard and the prompts API."""

from __future__ import annotations

import hashlib
import re
from typing import Any

# Key-looking strings (sk-..., Bearer ..., key=...) are masked in error messages.
_SECRET_RE = re.compile(
    r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"
    r"|\b(sk|pk|rk|ak)-[A-Za-z0-9_-]{6,}"
    r"|((?:api[_-]?key|password|passwd|secret|token|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]{3,}"
    r"|(://[^:/@\s]+:)[^@/\s]+(@)")


def scrub_secrets(text: str) -> str:
    """Mask key-like substrings (``sk-…``, ``Bearer …``, ``api_key=…``, URL passwords)."""

    def repl(m: re.Match) -> str:
        if m.group(1):
            return m.group(1) + "***"
        if m.group(2):
            return m.group(2) + "-***"
        if m.group(3):
            return m.group(3) + "***"
        return m.group(4) + "***" + m.group(5)

    return _SECRET_RE.sub(repl, text)


_SECOND_TEXT: dict[int, str] = {}


_FINGERPRINTS: dict[str, str] = {}


def key_fingerprint(headers: Any) -> str:
    """An id for the client's bearer key: ``key-`` + 12 hex of its SHA-256 (never the key)."""
    if headers is None:
        return ""
    auth = headers.get("Authorization") or headers.get("api-key") or headers.get("x-api-key") or ""
    if not auth:
        return ""
    found = _FINGERPRINTS.get(auth)
    if found is None:
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else auth.strip()
        found = "key-" + hashlib.sha256(token.encode()).hexdigest()[:12] if token else ""
        if len(_FINGERPRINTS) > 10_000:
            _FINGERPRINTS.clear()
        _FINGERPRINTS[auth] = found
    return found
