"""Scorers: each turns (item, candidate output) into a score, or ``None`` when it does not apply.

``--scorer NAME[=ARG]`` picks one: ``exact``, ``normalized``, ``contains``, ``regex``, ``json``,
``numeric`` (``builtin``), ``embedding`` and ``judge`` (``models``: they call models through
the gateway), or ``module:function``, a plugin ``score(item, output) -> float | None``
(``plugin``). ``build_scorers`` makes them from the specs.
"""

from __future__ import annotations

from gateway.evals.scorers.base import Scorer, ScorerError, Verdict
from gateway.evals.scorers.builtin import BUILTIN
from gateway.evals.scorers.models import MODEL_SCORERS, ModelCaller
from gateway.evals.scorers.plugin import PluginScorer

DEFAULT_SCORERS = ("exact",)


def build_scorers(specs: list[str], caller: ModelCaller | None = None) -> list[Scorer]:
    """The scorers ``specs`` name, in order; raises ``ScorerError`` for an unknown name, a bad
    argument, a duplicate, or a model scorer without its model."""
    out: list[Scorer] = []
    for spec in specs or DEFAULT_SCORERS:
        name, _, arg = spec.partition("=")
        name = name.strip()
        if name in BUILTIN:
            scorer: Scorer = BUILTIN[name](arg or None)
        elif name in MODEL_SCORERS:
            scorer = MODEL_SCORERS[name](arg or None, caller)
        elif ":" in name and not arg:
            scorer = PluginScorer(name)
        else:
            known = ", ".join([*BUILTIN, *MODEL_SCORERS])
            raise ScorerError(f"unknown scorer {spec!r} (known: {known}; or module:function for a plugin)")
        if any(s.name == scorer.name for s in out):
            raise ScorerError(f"scorer {scorer.name!r} given twice")
        out.append(scorer)
    return out


__all__ = ["DEFAULT_SCORERS", "ModelCaller", "Scorer", "ScorerError", "Verdict", "build_scorers"]
