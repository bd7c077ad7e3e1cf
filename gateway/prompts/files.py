"""Reading a directory of named YAML files (prompts, chains): which files count, reading them
with their problems reported by file, and the digest of what was read (part of the config hash).
Shared by the prompt and the chain registries."""

from __future__ import annotations

import hashlib
from pathlib import Path

from gateway.prompts.models import NAME_RE

PROMPT_SUFFIXES = (".yaml", ".yml")


def prompt_files(directory: Path) -> list[Path]:
    """The prompt files of ``directory`` (sorted; hidden files and the lock are skipped)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.suffix in PROMPT_SUFFIXES and not p.name.startswith(".") and p.is_file())


def read_named_files(paths: list[Path], kind: str, problems: list[str], raw_files: list[tuple[str, bytes]],
                     label=str):
    """Yield ``(path, data)`` for each readable file whose stem is a valid, not yet seen name.

    Every file read is appended to ``raw_files`` (it feeds the config hash, invalid or not);
    unreadable files, bad names and a name defined twice (``.yaml`` and ``.yml``) are reported
    in ``problems`` as ``<label(path)>: …``. ``kind``: ``prompt`` or ``chain``, for messages.
    """
    seen: set[str] = set()
    for path in paths:
        where = label(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(f"{where}: cannot read: {exc.strerror}")
            continue
        raw_files.append((path.name, data))
        if not NAME_RE.match(path.stem):
            problems.append(f"{where}: {path.stem!r} is not a valid {kind} name (letters, digits, _ . -)")
            continue
        if path.stem in seen:
            problems.append(f"{where}: {kind} {path.stem!r} is defined twice (.yaml and .yml)")
            continue
        seen.add(path.stem)
        yield path, data


def files_digest(files: list[tuple[str, bytes]]) -> str:
    """Hash of ``(name, bytes)`` pairs in order (the prompt part of the config hash)."""
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()
