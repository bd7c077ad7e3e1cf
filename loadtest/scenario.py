"""Scenarios: what traffic to send, read from YAML, and the request factory built from one.

A scenario file (see ``loadtest/scenarios/``)::

    name: mixed
    endpoint: chat/completions     # or completions
    models: {gpt-bench: 3, gpt-bench-b: 1}   # public model name -> weight (the model mix)
    stream_ratio: 0.3              # share of requests sent with "stream": true
    include_usage: false           # streamed requests ask for stream_options.include_usage
    prompt_tokens: 64              # words in the user message (about one token each)
    output_tokens: 20              # max_tokens sent; the fake upstream answers that many
    repeat_share: 0.1              # share of requests repeating one of repeat_pool bodies (cache hits)
    repeat_pool: 16
    mode: open                     # open (Poisson arrivals at each rate) | closed (fixed concurrency)
    rates: [100, 300, 1000]        # open loop: requests/s, one step each
    concurrency: 32                # closed loop: requests in flight
    duration_s: 10                 # measured seconds per step
    warmup_s: 1                    # unmeasured seconds before each step
    seed: 1

Every request that is not a repeat is unique (a run nonce and a counter in the prompt), so a
cache in the gateway only ever hits on the ``repeat_share``.
"""

from __future__ import annotations

import os
import random
from bisect import bisect
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import orjson
import yaml

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

_VOCAB = ("route stream token cache latency prompt model gateway backend request answer "
          "queue budget tenant retry chunk vector usage trace batch").split()


class ScenarioError(ValueError):
    """A scenario file or override is invalid; the message names the field."""


@dataclass(frozen=True)
class Scenario:
    name: str = "default"
    endpoint: str = "chat/completions"
    models: dict[str, float] = field(default_factory=lambda: {"gpt-bench": 1.0})
    stream_ratio: float = 0.0
    include_usage: bool = False
    prompt_tokens: int = 64
    output_tokens: int = 20
    repeat_share: float = 0.0
    repeat_pool: int = 16
    mode: str = "closed"
    rates: list[float] = field(default_factory=lambda: [300.0])
    concurrency: int = 32
    duration_s: float = 10.0
    warmup_s: float = 1.0
    seed: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.endpoint not in ("chat/completions", "completions"):
            problems.append(f"endpoint: {self.endpoint!r} is not chat/completions or completions")
        if not self.models or any((not isinstance(w, (int, float))) or w < 0 for w in self.models.values()) \
                or sum(self.models.values()) <= 0:
            problems.append("models: needs at least one model with a positive weight")
        for name in ("stream_ratio", "repeat_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name}: {value} is not between 0 and 1")
        if self.mode not in ("open", "closed"):
            problems.append(f"mode: {self.mode!r} is not open or closed")
        if self.mode == "open" and (not self.rates or any(r <= 0 for r in self.rates)):
            problems.append("rates: open loop needs one or more positive rates")
        for name in ("prompt_tokens", "output_tokens", "repeat_pool", "concurrency"):
            if getattr(self, name) < (0 if name == "output_tokens" else 1):
                problems.append(f"{name}: {getattr(self, name)} is too small")
        if self.duration_s <= 0 or self.warmup_s < 0:
            problems.append("duration_s must be > 0 and warmup_s >= 0")
        if problems:
            raise ScenarioError(f"scenario {self.name!r}: " + "; ".join(problems))

    def with_overrides(self, **overrides: Any) -> Scenario:
        """A copy with the given fields replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_scenario(path_or_name: str | os.PathLike) -> Scenario:
    """Read a scenario YAML file; a bare name (``chat-json``) is looked up in ``loadtest/scenarios``."""
    path = Path(path_or_name)
    if not path.exists() and not path.suffix:
        path = SCENARIO_DIR / f"{path_or_name}.yaml"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a YAML mapping")
    known = {f.name for f in fields(Scenario)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ScenarioError(f"{path}: unknown keys {unknown} (known: {sorted(known)})")
    data.setdefault("name", path.stem)
    if "rates" in data and not isinstance(data["rates"], list):
        data["rates"] = [data["rates"]]
    return Scenario(**data)


class RequestFactory:
    """Makes request bodies for a scenario: ``next() -> (stream, body_bytes)``.

    Bodies are pre-split around a unique marker once, so a unique request costs one bytes
    join; repeats are picked from a fixed pool.
    """

    def __init__(self, scenario: Scenario, seed: int | None = None):
        self.scenario = scenario
        self._rng = random.Random(scenario.seed if seed is None else seed)
        self._models = list(scenario.models)
        total = float(sum(scenario.models.values()))
        acc, cum = 0.0, []
        for name in self._models:
            acc += scenario.models[name] / total
            cum.append(acc)
        cum[-1] = 1.0
        self._cum = cum
        self._nonce = os.urandom(4).hex()
        self._n = 0
        words = " ".join(_VOCAB[(i * 7 + 3) % len(_VOCAB)] for i in range(scenario.prompt_tokens))
        self._parts: dict[tuple[str, bool], tuple[bytes, bytes]] = {}
        self._repeats: dict[tuple[str, bool], list[bytes]] = {}
        for model in self._models:
            for stream in (False, True):
                pre, post = self._body(model, stream, words + " #\x00").split(b"\\u0000")
                self._parts[(model, stream)] = (pre, post)
                self._repeats[(model, stream)] = [
                    self._body(model, stream, f"{words} repeat-{k}") for k in range(scenario.repeat_pool)]

    def _body(self, model: str, stream: bool, text: str) -> bytes:
        s = self.scenario
        body: dict[str, Any] = {"model": model}
        if s.endpoint == "chat/completions":
            body["messages"] = [{"role": "user", "content": text}]
        else:
            body["prompt"] = text
        body["max_tokens"] = s.output_tokens
        if stream:
            body["stream"] = True
            if s.include_usage:
                body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body)

    def next(self) -> tuple[bool, bytes]:
        rng = self._rng
        s = self.scenario
        model = self._models[bisect(self._cum, rng.random())] if len(self._models) > 1 else self._models[0]
        stream = s.stream_ratio > 0 and (s.stream_ratio >= 1 or rng.random() < s.stream_ratio)
        if s.repeat_share and rng.random() < s.repeat_share:
            pool = self._repeats[(model, stream)]
            return stream, pool[rng.randrange(len(pool))]
        self._n += 1
        pre, post = self._parts[(model, stream)]
        return stream, b"%s%s-%d%s" % (pre, self._nonce.encode(), self._n, post)
