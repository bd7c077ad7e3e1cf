"""The immutability record: ``versions.lock`` beside the prompt files.

A JSON file mapping every prompt version ever loaded to its content hash and the time it was
first seen::

    {"format": 1,
     "prompts": {"support-bot": {"1": {"hash": "3f2a…", "first_seen": "2026-11-29T11:00:00.000Z"}}}}

The loader refuses a version whose content no longer matches its recorded hash, so "changing
version 3" fails loudly and "add version 4" is the only way forward. The gateway adds new
versions when it loads a config (``serve`` and every hot reload; ``llm-gateway prompts lock``
does it by hand, ``check-config`` only reads). Commit the lock file with the prompts: review
then shows every new version, and a fresh checkout still knows the history. Entries are never
removed, so deleting a version and re-adding it with other content is caught too.

Writes are atomic (temporary file + rename) and merge with what is on disk, so several
workers recording the same versions agree. A read-only directory only loses the on-disk
record (a warning); the registry in force still guards hot reloads.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

log = logging.getLogger("gateway.prompts")
FORMAT = 1


@dataclass(frozen=True, slots=True)
class LockEntry:
    """A recorded version: its content ``hash`` (hex) and ``first_seen`` (epoch seconds)."""

    hash: str
    first_seen: float


def format_ts(ts: float) -> str:
    """Epoch seconds → ``2026-11-29T11:00:00.000Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def _parse_ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


class LockFile:
    """``read()`` → ``{prompt: {version: LockEntry}}`` (empty when the file does not exist;
    ``ValueError`` when it is malformed); ``add(entries)`` merges and writes."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict[str, dict[int, LockEntry]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ValueError(f"cannot read the version lock: {exc.strerror}") from None
        try:
            doc = orjson.loads(data)
            if doc.get("format") != FORMAT:
                raise ValueError(f"unknown lock format {doc.get('format')!r}")
            out: dict[str, dict[int, LockEntry]] = {}
            for name, versions in doc["prompts"].items():
                out[name] = {int(v): LockEntry(str(e["hash"]), _parse_ts(e["first_seen"]))
                             for v, e in versions.items()}
            return out
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"malformed version lock ({type(exc).__name__}: {exc}); fix it or restore it "
                             "from version control") from None

    def add(self, entries: dict[tuple[str, int], tuple[str, float]]) -> bool:
        """Record ``{(prompt, version): (hash, first_seen)}`` not yet in the file; returns
        whether the file was written. Existing entries always win."""
        try:
            current = self.read()
        except ValueError:
            return False
        merged = {name: dict(vs) for name, vs in current.items()}
        changed = False
        for (name, version), (digest, first_seen) in entries.items():
            if version not in merged.setdefault(name, {}):
                merged[name][version] = LockEntry(digest, first_seen)
                changed = True
        if not changed:
            return False
        doc = {"format": FORMAT, "prompts": {
            name: {str(v): {"hash": e.hash, "first_seen": format_ts(e.first_seen)} for v, e in sorted(vs.items())}
            for name, vs in sorted(merged.items())}}
        data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("prompts: could not write the version lock %s (%s); versions stay guarded by the "
                        "running config only", self.path, exc.strerror)
            try:
                tmp.unlink()
            except OSError:
                pass
            return False
        return True
