"""Config error paths: a pydantic error location as the path a user reads in the file."""

from __future__ import annotations


def format_loc(loc: tuple) -> str:
    """``("models", "chat", "targets", 0, "backend")`` → ``models.chat.targets[0].backend``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
