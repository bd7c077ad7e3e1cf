"""``Router``: turn a request into a ``RoutePlan`` (rule → model → strategy → ordered targets).

Built once per config snapshot. Target health lives in the shared ``HealthRegistry`` so it
survives reloads. Targets whose circuit is open, or whose ``context_window`` cannot hold the
estimated prompt plus ``max_tokens``, are skipped up front and logged as such. A request
without a model goes where the config's ``passthrough:`` globs send its path
(``passthrough_backend``, ``passthrough_plan``).
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Callable, Mapping
from typing import Any

from gateway.config.models import GatewayConfig, PublicModel, Target
from gateway.core.errors import ModelNotFoundError, NoHealthyTargetError
from gateway.core.tokens import prompt_tokens_upper_bound
from gateway.core.upstream import Upstream
from gateway.routing.health import OPEN, HealthRegistry
from gateway.routing.plan import Candidate, RoutePlan
from gateway.routing.rules import RuleInput, RuleSet, lazy
from gateway.routing.strategies import build_strategies

TokenCounter = Callable[[dict[str, Any]], int]
DEFAULT_RULE = "default"
PASSTHROUGH = "passthrough"  # the rule and strategy named in a model-less request's row


class Router:
    """Routing for one config. ``plan(...)`` raises ``ModelNotFoundError`` (404) for an
    unknown model and ``NoHealthyTargetError`` (503) when every target is skipped."""

    def __init__(self, config: GatewayConfig, clients: Mapping[str, Upstream], health: HealthRegistry,
                 count_tokens: TokenCounter, rng: random.Random | None = None, ewma_alpha: float = 0.3):
        self._config = config
        self._clients = clients
        self._health = health
        self._count_tokens = count_tokens
        settings = config.routing
        self.rng = rng or random.Random(settings.seed)
        self.strategies = build_strategies(settings.exploration, settings.vllm_load, health)
        self.rules = RuleSet(config.routes)
        self._has_rules = bool(self.rules)
        self._known = ", ".join(sorted(config.models)) or "(none configured)"
        self._breaker_settings = settings.circuit_breaker
        self.target_keys = {f"{t.backend}/{t.model or name}" for name, m in config.models.items() for t in m.targets}
        self.target_keys |= {f"{t.backend}/{t.model or r.model or ''}"
                             for r in config.routes for t in (r.targets or ())}
        self._ewma_alpha = ewma_alpha
        self._passthrough = [(r.path, r.backend) for r in config.passthrough]
        self._passthrough_seen: dict[str, str] = {}
        self._passthrough_targets = {b: [Target(backend=b)] for _, b in self._passthrough}
        # Per public model, what a request without a matching rule needs, worked out once:
        # its targets, strategy, retry policy and fallback classes.
        self._defaults: dict[str, tuple[list[Target], str, Any, frozenset]] = {
            name: (pm.targets, pm.strategy, pm.retry or settings.retry,
                   frozenset(pm.fallback_on if pm.fallback_on is not None else settings.fallback_on))
            for name, pm in config.models.items()}
        self._sticky = frozenset(name for name, pm in config.models.items() if pm.sticky)
        # The version of each adapter, by the name its vLLM targets use (for the rows).
        self.adapters = {name: a.version for name, a in config.adapters.items()}
        # The (target, client, upstream model, health state) of each target list, looked up on
        # first use and then reused: this router's config, hence its breaker settings, is fixed.
        self._bound: dict[str | tuple[str, int], list[tuple[Target, Upstream, str, Any]]] = {}

    def _candidates(self, public: str, targets: list[Target], key: str | tuple[str, int]) -> list[Candidate]:
        """``key``: the public name for a model's own targets, (public, id) for a rule's."""
        bound = self._bound.get(key)
        if bound is None:
            bound = []
            for t in targets:
                upstream_model = t.model or public
                state = self._health.state(t.backend, upstream_model, self._breaker_settings)
                state.ewma_alpha = self._ewma_alpha
                bound.append((t, self._clients[t.backend], upstream_model, state))
            if len(self._bound) < 1024:  # the config's target lists (rules may add a few)
                self._bound[key] = bound
        return [Candidate(t, client, upstream_model, state) for t, client, upstream_model, state in bound]

    def _estimators(self, body: dict[str, Any]) -> tuple[Callable[[], int], Callable[[], int]]:
        """Prompt-token estimates for rules and context windows, each computed at most once."""
        return lazy(lambda: self._count_tokens(body)), lazy(lambda: prompt_tokens_upper_bound(body))

    def plan(self, model: str, body: dict[str, Any], stream: bool, headers: Mapping[str, str],
             metadata: Mapping[str, str] | None = None, tenant: str = "", api_key_id: str = "",
             prompt_id: str = "", sticky_key: Callable[[], str | None] | None = None) -> RoutePlan:
        """Decide where a request goes. ``body``: the request dict (for token estimates).
        ``sticky_key``: gives the caller's experiment key (a ``sticky`` weighted model keeps a
        caller on one target; asked only for such a model)."""
        tokens: Callable[[], int] | None = None
        at_most: Callable[[], int] | None = None
        rule = None
        if self._has_rules:
            tokens, at_most = self._estimators(body)
            rule = self.rules.first_match(RuleInput(model, headers, metadata or {}, tenant, api_key_id,
                                                    prompt_id, stream, tokens, at_most))
        if rule is None or not (rule.model or rule.targets or rule.strategy):
            public = model
            defaults = self._defaults.get(public)
            if defaults is None:
                raise ModelNotFoundError(f"The model `{model}` does not exist. Available models: {self._known}.",
                                         param="model")
            targets, strategy_name, retry, fallback = defaults
            key: str | tuple[str, int] = public
        else:
            public = rule.model or model
            pm: PublicModel | None = self._config.models.get(public)
            if pm is None and not rule.targets:
                raise ModelNotFoundError(f"The model `{model}` does not exist. Available models: {self._known}.",
                                         param="model")
            targets = rule.targets or (pm.targets if pm is not None else [])
            strategy_name = rule.strategy or (pm.strategy if pm is not None else "priority")
            retry = (pm.retry if pm is not None and pm.retry else None) or self._config.routing.retry
            fallback = frozenset(pm.fallback_on if pm is not None and pm.fallback_on is not None
                                 else self._config.routing.fallback_on)
            key = (public, id(targets))
        candidates = self._candidates(public, targets, key)
        usable = []
        needed = None
        for c in candidates:
            if c.state.breaker.peek() == OPEN:
                c.skipped = "circuit_open"
                continue
            if c.target.context_window is not None:
                if tokens is None or at_most is None:
                    tokens, at_most = self._estimators(body)
                limit = body.get("max_completion_tokens") or body.get("max_tokens") or 0
                limit = limit if isinstance(limit, int) else 0
                if at_most() + limit <= c.target.context_window:
                    usable.append(c)  # fits even by the cheap upper bound: no tokenising
                    continue
                if needed is None:
                    needed = tokens() + limit
                if needed > c.target.context_window:
                    c.skipped = "context_window"
                    continue
            usable.append(c)
        strategy = self.strategies[strategy_name]
        if not usable:
            ordered = []
        elif strategy_name == "weighted" and public in self._sticky and sticky_key is not None \
                and (key_text := sticky_key()) is not None:
            ordered = strategy.rank(usable, stream, self.rng,  # type: ignore[call-arg]  # Weighted's rank takes it
                                    sticky_key=f"{public}\0{key_text}")
        elif getattr(strategy, "wants_body", False):  # vllm-load: prefix affinity reads the prompt
            ordered = strategy.rank(usable, stream, self.rng, body=body)  # type: ignore[call-arg]  # its rank takes it
        else:
            ordered = strategy.rank(usable, stream, self.rng)
        plan = RoutePlan(public, rule.name if rule is not None else DEFAULT_RULE, strategy_name, ordered,
                         ordered + [c for c in candidates if c.skipped], retry, fallback)
        if not ordered:
            reasons = ", ".join(f"{c.state.key}: {c.skipped}" for c in candidates)
            raise NoHealthyTargetError(f"No healthy target for model `{public}` ({reasons}).", plan=plan)
        return plan

    def passthrough_backend(self, endpoint: str) -> str | None:
        """The backend ``passthrough:`` names for ``endpoint`` (the path below ``/v1/``): the
        first glob that matches, or None."""
        backend = self._passthrough_seen.get(endpoint)  # "": looked up, none matches
        if backend is None:
            backend = next((b for glob, b in self._passthrough if fnmatch.fnmatchcase(endpoint, glob)), "")
            if len(self._passthrough_seen) < 1024:  # paths carry ids (files/file-abc): bounded
                self._passthrough_seen[endpoint] = backend
        return backend or None

    def passthrough_plan(self, backend: str) -> RoutePlan:
        """The plan of a request without a model: ``backend`` alone (no model name to send), with
        the default retry policy; nothing to fall back to."""
        targets = self._passthrough_targets[backend]
        candidates = self._candidates("", targets, ("", id(targets)))
        return RoutePlan("", PASSTHROUGH, PASSTHROUGH, candidates, list(candidates), self._config.routing.retry,
                         frozenset())
