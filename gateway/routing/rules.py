"""Routing rules: ordered ``match`` conditions, compiled once per config; first match wins.

A rule's conditions are compiled into small predicate functions over ``RuleInput``; the
prompt-token estimate (tiktoken) is computed only when a rule that needs it is evaluated.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config.models import RouteRule


@dataclass(slots=True)
class RuleInput:
    """What rules may look at. ``prompt_tokens`` is a zero-argument callable (lazy, cached);
    ``prompt_tokens_at_most`` a cheap upper bound of it (no tokenising), tried first."""

    model: str
    headers: Mapping[str, str]
    metadata: Mapping[str, str]
    tenant: str
    api_key_id: str
    prompt_id: str
    stream: bool
    prompt_tokens: Callable[[], int]
    prompt_tokens_at_most: Callable[[], int] | None = None


Predicate = Callable[..., bool]  # called with one RuleInput; a compiled rule binds its values as defaults


def _glob(pattern: str) -> Callable[[str], bool]:
    if not any(ch in pattern for ch in "*?["):
        return pattern.__eq__
    return re.compile(fnmatch.translate(pattern)).match  # type: ignore[return-value]


def compile_rule(rule: RouteRule) -> list[Predicate]:
    """The predicates of one rule (all must hold)."""
    m = rule.match
    preds: list[Predicate] = []
    if m.model is not None:
        match_model = _glob(m.model)
        preds.append(lambda r: bool(match_model(r.model)))
    for name, value in m.headers.items():
        preds.append(lambda r, n=name, v=value: r.headers.get(n) == v)
    for name, pattern in m.header_regex.items():
        rx = re.compile(pattern)
        preds.append(lambda r, n=name, x=rx: bool(x.search(r.headers.get(n, ""))))
    for key, value in m.metadata.items():
        preds.append(lambda r, k=key, v=value: str(r.metadata.get(k, "")) == v if k in r.metadata else False)
    for field in ("tenant", "api_key_id", "prompt_id"):
        pattern = getattr(m, field)
        if pattern is not None:
            test = _glob(pattern)
            preds.append(lambda r, f=field, t=test: bool(t(getattr(r, f))))
    if m.stream is not None:
        preds.append(lambda r, s=m.stream: r.stream is s)
    if m.min_prompt_tokens is not None:
        # The cheap bound settles most prompts (too short to reach ``lo``) without tiktoken.
        preds.append(lambda r, lo=m.min_prompt_tokens: (r.prompt_tokens_at_most is None
                                                       or r.prompt_tokens_at_most() >= lo)
                     and r.prompt_tokens() >= lo)
    if m.max_prompt_tokens is not None:
        preds.append(lambda r, hi=m.max_prompt_tokens: (r.prompt_tokens_at_most is not None
                                                       and r.prompt_tokens_at_most() <= hi)
                     or r.prompt_tokens() <= hi)
    return preds


class RuleSet:
    """Ordered compiled rules. ``first_match(inp)`` → the matching ``RouteRule`` or None."""

    def __init__(self, rules: list[RouteRule]):
        self._rules = [(rule, compile_rule(rule)) for rule in rules]

    def __bool__(self) -> bool:
        return bool(self._rules)

    def first_match(self, inp: RuleInput) -> RouteRule | None:
        for rule, preds in self._rules:
            if all(p(inp) for p in preds):
                return rule
        return None


def lazy(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap a zero-argument function so it runs at most once."""
    cache: list[Any] = []

    def get() -> Any:
        if not cache:
            cache.append(fn())
        return cache[0]

    return get
