"""Selecting a prompt: the ``name[@label|@version]`` syntax and sticky experiment arms.

``support-bot`` selects label ``production``; ``support-bot@staging`` a label;
``support-bot@4`` version 4; ``support-bot@latest`` the highest version.

A weighted label (``canary: {3: 90, 4: 10}``) hashes the caller's key with the prompt and
label names (BLAKE2b, 64 bits) to a point in [0, 1) and takes the arm whose cumulative share
(arms in version order) covers it. The same key always gets the same arm while the weights
stay; raising the share of the highest version only moves callers onto it, never off it.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from gateway.prompts.errors import PromptError
from gateway.prompts.models import LABEL_RE, NAME_RE

DEFAULT_LABEL = "production"
LATEST = "latest"
_SCALE = float(1 << 64)


@dataclass(frozen=True, slots=True)
class Ref:
    """A selection: prompt ``name`` and either a ``label`` or a ``version`` (neither: the
    default label ``production``)."""

    name: str
    label: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        return f"{self.name}@{self.label or DEFAULT_LABEL}"


def parse_ref(text: str, param: str | None = None) -> Ref:
    """Parse ``name``, ``name@label`` or ``name@version``; raises ``PromptError``."""
    if not isinstance(text, str):
        raise PromptError("a prompt reference must be a string like name@label", param=param)
    name, sep, selector = text.strip().partition("@")
    if not NAME_RE.match(name):
        raise PromptError(f"invalid prompt reference {text!r}: expected name, name@label or name@version",
                          param=param)
    if not sep:
        return Ref(name)
    return Ref(name, *parse_selector(selector, text, param))


def parse_selector(selector: str, text: str = "", param: str | None = None) -> tuple[str | None, int | None]:
    """``(label, version)`` of the part after ``@``."""
    if selector.isdigit() and int(selector) >= 1:
        return None, int(selector)
    if LABEL_RE.match(selector):
        return selector, None
    raise PromptError(f"invalid prompt selector {selector!r} in {text or selector!r}: "
                      "a label (letters first) or a version number", param=param)


def bucket(salt: str, key: str) -> float:
    """The caller's point in [0, 1) for an experiment (stable across processes and restarts)."""
    digest = hashlib.blake2b(f"{salt}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def pick_arm(arms: tuple[tuple[int, float], ...], salt: str, key: str | None) -> int:
    """The version an experiment gives ``key`` (``None``: a random draw by weight)."""
    if len(arms) == 1:
        return arms[0][0]
    total = sum(w for _, w in arms)
    point = (bucket(salt, key) if key is not None else random.random()) * total
    acc = 0.0
    for version, weight in arms:
        acc += weight
        if point < acc:
            return version
    return arms[-1][0]
