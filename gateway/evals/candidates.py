"""Candidates: what an evaluation compares. Each is one of

- ``MODEL``: a public model of the config, called with the item's messages;
- ``PROMPT@VERSION`` or ``PROMPT@LABEL``: a prompt version of the registry, rendered with the
  item's ``variables`` into a call of ``--prompt-model``; a label is resolved to its version
  when the run starts and the candidate is recorded as ``PROMPT@VERSION`` (a label that splits
  traffic between versions is refused: evaluate its versions);
- ``PROMPT@SELECTOR/MODEL``: the same on that model (recorded as ``PROMPT@VERSION/MODEL``);
- ``ADAPTER@VERSION``: a version of a LoRA adapter of the config, called with the item's
  messages on a temporary copy loaded on the adapter's vLLM servers (``gateway.evals.adapters``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.evals.adapters import AdapterVersion, adapter_version
from gateway.evals.dataset import Item


class CandidateError(ValueError):
    """A candidate names no model or prompt version of the config."""


@dataclass(frozen=True)
class Candidate:
    """``name``: as recorded (``eval_candidate``, ``llm_eval_scores.candidate``); ``given``: as
    written; ``model`` the public model called; ``prompt``: ``(name, version)`` or ``None``;
    ``adapter``: the adapter version to load for it, or ``None``."""

    name: str
    given: str
    model: str
    prompt: tuple[str, int] | None = None
    adapter: AdapterVersion | None = None

    def body(self, item: Item) -> dict[str, Any]:
        """The chat completion request for ``item``."""
        body: dict[str, Any] = {"model": self.model, "messages": item.messages}
        for key in ("tools", "tool_choice", "response_format"):
            if item.data.get(key) is not None:
                body[key] = item.data[key]
        if self.prompt is not None:
            body["prompt"] = {"id": self.prompt[0], "version": self.prompt[1], "variables": item.variables}
        return body


def _prompt_version(registry: Any, name: str, selector: str, given: str) -> int:
    from gateway.prompts.errors import PromptError
    from gateway.prompts.select import parse_ref

    try:
        ref = parse_ref(f"{name}@{selector}")
        if ref.version is None and ref.label:
            label = registry.get(name).labels.get(ref.label)
            if label is not None and label.version is None:
                arms = ", ".join(f"{name}@{v}" for v, _ in label.arms)
                raise CandidateError(f"candidate {given!r}: label {ref.label!r} splits traffic between versions; "
                                     f"evaluate them one by one ({arms})")
        return registry.resolve(ref).version.version
    except PromptError as exc:
        raise CandidateError(f"candidate {given!r}: {exc}") from None


def _adapter_candidate(cfg: Any, name: str, selector: str, given: str) -> Candidate:
    versions = cfg.adapters[name].versions
    if not selector.isdigit() or int(selector) not in versions:
        raise CandidateError(f"candidate {given!r}: adapter {name!r} has no version {selector!r} "
                             f"(has {', '.join(map(str, sorted(versions)))})")
    adapter = adapter_version(cfg, name, int(selector))
    return Candidate(f"{name}@{adapter.version}", given, adapter.served, adapter=adapter)


def resolve_candidates(compiled: Any, specs: list[str], prompt_model: str | None) -> list[Candidate]:
    """The candidates ``specs`` name in ``compiled`` (``gateway.compiled.CompiledConfig``);
    raises ``CandidateError``."""
    models = compiled.snapshot.config.models
    registry = compiled.prompts
    out: list[Candidate] = []
    for given in specs:
        given = given.strip()
        if given in models:
            out.append(Candidate(given, given, given))
            continue
        ref, slash, model = given.partition("/")
        name, at, selector = ref.partition("@")
        is_prompt = registry is not None and name in registry.prompts
        if at and not slash and not is_prompt and name in compiled.snapshot.config.adapters:
            out.append(_adapter_candidate(compiled.snapshot.config, name, selector, given))
            continue
        if not at or not is_prompt:
            known = ", ".join(sorted(models)) or "none"
            raise CandidateError(f"candidate {given!r} is neither a public model (known: {known}) nor "
                                 "PROMPT@VERSION / PROMPT@LABEL of the prompt registry nor ADAPTER@VERSION "
                                 "of the adapters")
        target = model if slash else prompt_model
        if not target:
            raise CandidateError(f"candidate {given!r} is a prompt: name the model to render it into with "
                                 f"--prompt-model MODEL or {ref}/MODEL")
        if target not in models:
            raise CandidateError(f"candidate {given!r}: unknown model {target!r}")
        version = _prompt_version(registry, name, selector, given)
        recorded = f"{name}@{version}" + (f"/{model}" if slash else "")
        out.append(Candidate(recorded, given, target, (name, version)))
    names = [c.name for c in out]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise CandidateError(f"candidate {n!r} given twice")
    if not out:
        raise CandidateError("no candidates (give --candidate at least once)")
    return out


def check_scorer_models(compiled: Any, scorers: list[Any]) -> None:
    """The model scorers' models are public models of the config, and the judge's rubric is a
    prompt of its registry: refused before any call rather than failing on every item."""
    from gateway.prompts.errors import PromptError
    from gateway.prompts.select import parse_ref

    for scorer in scorers:
        model = getattr(scorer, "model", None)
        if model is not None and model not in compiled.snapshot.config.models:
            raise CandidateError(f"scorer {scorer.name}: unknown model {model!r}")
        rubric = getattr(scorer, "prompt", None)
        if rubric is not None:
            if compiled.prompts is None:
                raise CandidateError(f"scorer {scorer.name}: no prompt {rubric!r} (the config has no prompts)")
            try:
                compiled.prompts.resolve(parse_ref(rubric))
            except PromptError as exc:
                raise CandidateError(f"scorer {scorer.name}: its rubric: {exc}") from None


__all__ = ["Candidate", "CandidateError", "check_scorer_models", "resolve_candidates"]
