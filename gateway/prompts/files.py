"""The named YAML files of a folder (prompts, chains) as the config read them
(``gateway.config.files``): which names are valid, with their problems reported by file.
Shared by the prompt and the chain registries."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from gateway.config.files import ConfigFile
from gateway.prompts.models import NAME_RE


def read_named_files(files: Iterable[ConfigFile], kind: str, problems: list[str],
                     label: Callable[[Path], str] = str) -> Iterator[tuple[Path, bytes]]:
    """Yield ``(path, data)`` for each file read whose stem is a valid, not yet seen name.

    Unreadable files, bad names and a name defined twice (``.yaml`` and ``.yml``) are reported
    in ``problems`` as ``<label(path)>: …``. ``kind``: ``prompt`` or ``chain``, for messages.
    """
    seen: set[str] = set()
    for file in files:
        path = file.path
        where = label(path)
        if file.data is None:
            problems.append(f"{where}: {file.error}")
            continue
        if not NAME_RE.match(path.stem):
            problems.append(f"{where}: {path.stem!r} is not a valid {kind} name (letters, digits, _ . -)")
            continue
        if path.stem in seen:
            problems.append(f"{where}: {kind} {path.stem!r} is defined twice (.yaml and .yml)")
            continue
        seen.add(path.stem)
        yield path, file.data
