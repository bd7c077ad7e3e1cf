"""Custom scorers: ``--scorer module:function`` imports ``function(item, output) -> float | None``
(the current directory is importable, as with ``python -m``).

``item`` is a dict: ``index``, ``id``, ``input`` (the last user message's text), ``messages``
(what the candidate was sent, the prompt's aside), ``expected`` (or ``None``) and ``data`` (the
item's whole JSON object). ``None`` means the scorer does not apply; a non-number or an
exception is that item's error. A coroutine function is awaited.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from gateway.evals.dataset import Item
from gateway.evals.scorers.base import Scorer, ScorerError, Verdict


class PluginScorer(Scorer):
    def __init__(self, spec: str):
        self.name = spec
        module, _, attr = spec.partition(":")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ScorerError(f"cannot load scorer {spec!r}: {exc}") from None
        if not callable(fn):
            raise ScorerError(f"scorer {spec!r} is not callable")
        self.fn = fn

    async def score(self, item: Item, output: str) -> Verdict:
        arg: dict[str, Any] = {"index": item.index, "id": item.item_id, "input": item.input_text(),
                               "messages": item.messages, "expected": item.expected, "data": item.data}
        try:
            value = self.fn(arg, output)
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            return Verdict(None, error=f"{self.name} raised {type(exc).__name__}: {exc}"[:1000])
        if value is None:
            return Verdict(None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return Verdict(None, error=f"{self.name} returned {type(value).__name__}, not a number")
        return Verdict(float(value))


__all__ = ["PluginScorer"]
