"""The scorers that ask a model, through the gateway like the candidates (their calls are rows
too, tagged ``eval_run`` and ``eval_scorer``; their cost is not the candidate's).

- ``embedding[=MODEL]``: cosine similarity of the output's and the expected answer's
  embeddings (MODEL, else ``--embedding-model`` / ``evaluations.embedding_model``).
- ``judge[=MODEL]``: the judge model (else ``--judge-model`` / ``evaluations.judge_model``)
  renders the rubric prompt ``evaluations.judge_prompt`` (a versioned prompt of the registry)
  with the variables ``input``, ``output`` and ``expected`` (``""`` when the item has none), and
  its answer is parsed into a score and a reason: a JSON object ``{"score": …, "reason": …}``
  (in a ```json fence or not), else ``score: X`` in the text, else a number alone. ``X/N``
  counts as X divided by N (N > 0). A score outside [0, 1] after that is no score (NULL), its
  reason saying why: the rubric asks for 0..1 or X/N, and a guess at another scale would skew
  the mean.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from gateway.evals.dataset import Item
from gateway.evals.scorers.base import Scorer, ScorerError, Verdict

_FENCE = re.compile(r"```(?:json)?\s*\n?(.*?)```", re.DOTALL)
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)"
# Between "score" and the number: punctuation and spaces, never a sign (``score: -5`` is -5).
_SCORE_IN_TEXT = re.compile(rf"score[^\w+\-.]{{0,3}}\s*({_NUM})(?:\s*/\s*({_NUM}))?", re.IGNORECASE)
_ALONE = re.compile(rf"^\s*({_NUM})(?:\s*/\s*({_NUM}))?\s*$")
_REASON_IN_TEXT = re.compile(r"reason\W{0,3}\s*(.+)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class ModelAnswer:
    """A call through the gateway: HTTP ``status``, the JSON ``body`` (or ``None``), the error
    text when it failed, its ``x-request-id`` and how long it took."""

    status: int
    body: Any
    error: str = ""
    request_id: str = ""
    latency_ms: float = 0.0


class ModelCaller(Protocol):
    """What the model scorers call: ``post(path, body, tags)`` through the gateway, where
    ``tags`` go into the row's metadata; and the models configured for them."""

    judge_model: str | None
    judge_prompt: str
    embedding_model: str | None

    async def post(self, path: str, body: dict[str, Any], tags: dict[str, str]) -> ModelAnswer: ...


def answer_text(body: Any) -> str:
    """A chat completion's answer: the first choice's content, or its tool calls as JSON."""
    try:
        message = body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return ""
    if not isinstance(message, dict):
        return ""
    if message.get("content"):
        return str(message["content"])
    if message.get("tool_calls"):
        return orjson.dumps(message["tool_calls"]).decode()
    return ""


def _ratio(value: str, scale: str | None) -> tuple[float | None, str]:
    """``X`` or ``X/N`` as a score in [0, 1], else ``(None, why)``: a judge's score outside the
    rubric's range (a negative one, 8 on an unstated scale) is no score rather than a guess."""
    number = float(value)
    if scale is not None:
        if float(scale) <= 0:
            return None, f"the judge's score {value}/{scale} has no positive scale"
        number /= float(scale)
    if not 0.0 <= number <= 1.0:
        shown = f"{value}/{scale}" if scale is not None else value
        return None, f"the judge's score {shown} is outside 0..1 (give a score from 0 to 1, or X/N)"
    return number, ""


def parse_judgement(text: str) -> tuple[float | None, str]:
    """``(score, reason)`` from a judge's answer; ``(None, why)`` when it holds no score in [0, 1]."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for chunk in candidates:
        chunk = chunk.strip()
        start, end = chunk.find("{"), chunk.rfind("}")
        if start < 0 or end <= start:
            continue
        try:
            obj = orjson.loads(chunk[start:end + 1])
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "score" in obj:
            raw = obj["score"]
            reason = str(obj.get("reason") or obj.get("explanation") or "")
            if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
                return None, f"the judge's score is not a number: {raw!r}"
            m = _ALONE.match(str(raw))
            if m is None:
                return None, f"the judge's score is not a number: {raw!r}"
            score, why = _ratio(m.group(1), m.group(2))
            return (score, reason) if score is not None else (None, why)
    m = _SCORE_IN_TEXT.search(text) or _ALONE.match(text)
    if m is None:
        return None, f"no score in the judge's answer: {text[:200]!r}"
    score, why = _ratio(m.group(1), m.group(2))
    if score is None:
        return None, why
    reason_m = _REASON_IN_TEXT.search(text)
    return score, (reason_m.group(1).strip() if reason_m else "")


class _ModelScorer(Scorer):
    def __init__(self, arg: str | None, caller: ModelCaller | None, configured: str | None, option: str):
        model = arg or configured
        if not model:
            raise ScorerError(f"{self.name}: no model (give {self.name}=MODEL, {option}, or "
                              f"evaluations.{option.lstrip('-').replace('-', '_')} in the config)")
        if caller is None:
            raise ScorerError(f"{self.name}: needs the gateway to call {model}")
        self.model = model
        self.caller = caller

    async def _post(self, path: str, body: dict[str, Any]) -> tuple[Any, str]:
        answer = await self.caller.post(path, body, {"eval_scorer": self.name})
        if answer.status != 200 or answer.body is None:
            return None, f"{self.name} model {self.model}: {answer.error or f'HTTP {answer.status}'}"
        return answer.body, ""


class Judge(_ModelScorer):
    name = "judge"

    def __init__(self, arg: str | None, caller: ModelCaller | None):
        super().__init__(arg, caller, caller.judge_model if caller else None, "--judge-model")
        self.prompt = self.caller.judge_prompt

    async def score(self, item: Item, output: str) -> Verdict:
        body = {"model": self.model, "messages": [],
                "prompt": {**_prompt_ref(self.prompt),
                           "variables": {"input": item.input_text(), "output": output,
                                         "expected": item.expected or ""}}}
        answer, error = await self._post("chat/completions", body)
        if error:
            return Verdict(None, error=error)
        score, reason = parse_judgement(answer_text(answer))
        if score is None:
            return Verdict(None, error=reason)
        return Verdict(score, reason[:1000])


def _prompt_ref(text: str) -> dict[str, Any]:
    """``name``, ``name@label`` or ``name@version`` as the body's ``prompt`` fields."""
    name, _, selector = text.partition("@")
    if not selector:
        return {"id": name}
    return {"id": name, "version": int(selector)} if selector.isdigit() else {"id": name, "label": selector}


def cosine(a: list[float], b: list[float]) -> float | None:
    dot = sum(x * y for x, y in zip(a, b))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm and len(a) == len(b) else None


class Embedding(_ModelScorer):
    name = "embedding"

    def __init__(self, arg: str | None, caller: ModelCaller | None):
        super().__init__(arg, caller, caller.embedding_model if caller else None, "--embedding-model")

    async def score(self, item: Item, output: str) -> Verdict:
        if item.expected is None:
            return Verdict(None, "the item has no expected answer")
        answer, error = await self._post("embeddings", {"model": self.model, "input": [output, item.expected]})
        if error:
            return Verdict(None, error=error)
        try:
            vectors = [d["embedding"] for d in sorted(answer["data"], key=lambda d: d.get("index", 0))]
            similarity = cosine(vectors[0], vectors[1])
        except (KeyError, IndexError, TypeError):
            return Verdict(None, error=f"embedding model {self.model}: no two embeddings in its answer")
        if similarity is None:
            return Verdict(None, error=f"embedding model {self.model}: zero or mismatched vectors")
        return Verdict(similarity)


MODEL_SCORERS: dict[str, Callable[[str | None, ModelCaller | None], Scorer]] = {
    "judge": Judge, "embedding": Embedding}

__all__ = ["MODEL_SCORERS", "ModelAnswer", "ModelCaller", "answer_text", "cosine", "parse_judgement"]
