"""The folders of YAML files a config names (``prompts.dir``, ``chains.dir``), read with it.

A config is more than ``gateway.yaml``: the prompt and chain files it points at are part of it.
The loader reads them here, once, as bytes — which files count, their bytes and the digest of
those bytes (part of the config hash) — without parsing them: what the files mean is for the
prompts and chains features, which compile them from the snapshot (``Feature.compile``). An
unreadable file is kept with its error, for the feature to report with its other problems.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

YAML_SUFFIXES = (".yaml", ".yml")


def yaml_files(directory: Path) -> list[Path]:
    """The YAML files of ``directory`` (sorted; hidden files and anything else skipped)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.suffix in YAML_SUFFIXES and not p.name.startswith(".") and p.is_file())


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """One file of a folder: its bytes, or ``None`` and why it could not be read."""

    path: Path
    data: bytes | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Folder:
    """A folder of YAML files as read: ``directory`` (``None``: no folder configured),
    whether it exists, its files in name order, and ``digest`` (``""`` when none was read)."""

    directory: Path | None
    exists: bool
    files: tuple[ConfigFile, ...]
    digest: str


NO_FOLDER = Folder(None, False, (), "")


def files_digest(files: list[tuple[str, bytes]]) -> str:
    """Hash of ``(name, bytes)`` pairs in order."""
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()


def read_folder(directory: str | os.PathLike[str] | None) -> Folder:
    """Read the YAML files of ``directory`` (none for ``None`` or a missing folder)."""
    if directory is None:
        return NO_FOLDER
    d = Path(directory)
    files = []
    for path in yaml_files(d):
        try:
            files.append(ConfigFile(path, path.read_bytes()))
        except OSError as exc:
            files.append(ConfigFile(path, None, f"cannot read: {exc.strerror}"))
    readable = [(f.path.name, f.data) for f in files if f.data is not None]
    return Folder(d, d.is_dir(), tuple(files), files_digest(readable) if readable else "")


def folder_path(setting: str | None, default: str, base_dir: str | os.PathLike[str] | None) -> Path | None:
    """A folder a config names: ``setting`` (relative to ``base_dir``, else the working
    directory), else ``<base_dir>/<default>``, else ``None`` (a config given as text)."""
    if setting:
        p = Path(setting)
        return p if p.is_absolute() or base_dir is None else Path(base_dir) / p
    return Path(base_dir) / default if base_dir is not None else None
