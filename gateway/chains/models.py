"""Pydantic models of one chain file (``config/chains/<name>.yaml``)::

    description: Outline first, then answer from the outline
    version: 2                      # bump when you change the file; stamped on every row
    deadline_s: 60                  # whole run (default chains.deadline_s)
    max_steps: 4                    # optional; at most chains.max_steps
    steps:
      - name: outline
        prompt: outline@production  # name, name@label or name@version (prompts registry)
        model: gpt-4o-mini          # a public model (not a chain)
        output: outline             # the variable later steps see (default: the step name)
        parse_json: true            # the output must be JSON; later steps get the parsed value
      - name: answer
        prompt: answer@production
        model: gpt-4o
        include_messages: true      # the caller's messages follow the prompt's
        params: {temperature: 0.2}  # request fields of this step

A step may retrieve instead of calling a model: it searches a retrieval collection
(``gateway.retrieval``) and its output is the list of hits (``id``, ``doc_id``, ``chunk_index``,
``text``, ``metadata``, ``distance``), nearest first, for later steps' templates::

      - name: docs
        retrieve:
          collection: handbook
          k: 4                        # 1..100 (default 5)
          query: "{{ input }}"        # a Jinja template over the step variables (the default)
          filter: {lang: en}          # metadata equality (optional)
      - name: answer
        prompt: answer-from-docs@production   # declares `docs` (type array)
        model: gpt-4o

Every model forbids unknown keys, so a typo is an error naming its path.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.prompts.models import VAR_RE

# Variables every step sees besides the caller's and the earlier outputs.
RESERVED = frozenset({"input", "messages", "variables"})
FORBIDDEN_PARAMS = frozenset({"model", "messages", "stream", "stream_options", "prompt", "variables", "metadata"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retrieve(_Strict):
    """A retrieve step's search: ``k`` nearest chunks of ``collection`` to the rendered ``query``."""

    collection: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    k: int = Field(5, ge=1, le=100)
    query: str = Field("{{ input }}", min_length=1)
    filter: dict[str, str] = Field(default_factory=dict)


class Step(_Strict):
    """One step: render ``prompt`` and call public ``model`` (its answer becomes ``output``), or
    ``retrieve`` from a collection (its hits become ``output``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    model: str | None = None
    retrieve: Retrieve | None = None
    prompt: str | None = None
    output: str | None = None
    parse_json: bool = False
    include_messages: bool = False
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def output_name(self) -> str:
        return self.output or self.name.replace("-", "_").replace(".", "_")

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(set(value) & FORBIDDEN_PARAMS)
        if bad:
            raise ValueError(f"{bad[0]!r} is set by the chain, not by step params")
        return value

    @model_validator(mode="after")
    def _check(self) -> Step:
        if self.retrieve is not None:
            given = [f for f in ("model", "prompt", "parse_json", "include_messages", "params")
                     if f in self.model_fields_set]
            if given:
                raise ValueError(f"a retrieve step calls no model: remove `{given[0]}`")
        elif self.model is None:
            raise ValueError("a step needs a `model` to call (or `retrieve` to search a collection)")
        elif self.prompt is None and not self.include_messages:
            raise ValueError("a step needs a `prompt` or `include_messages: true` (something to send)")
        if not VAR_RE.match(self.output_name):
            raise ValueError(f"output {self.output_name!r} is not a variable name (letters, digits, _)")
        if self.output_name in RESERVED:
            raise ValueError(f"output {self.output_name!r} is reserved ({', '.join(sorted(RESERVED))})")
        return self


class ChainFile(_Strict):
    """A chain: ordered ``steps`` run one after the other."""

    description: str = ""
    version: int = Field(1, ge=1)
    deadline_s: float | None = Field(None, gt=0)
    max_steps: int | None = Field(None, ge=1)
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> ChainFile:
        names = [s.name for s in self.steps]
        outputs = [s.output_name for s in self.steps]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"steps[{i}].name: duplicate step name {name!r}")
            if outputs[i] in outputs[:i]:
                raise ValueError(f"steps[{i}].output: {outputs[i]!r} is already an earlier step's output")
        if self.steps[-1].retrieve is not None:
            raise ValueError(f"steps[{len(self.steps) - 1}].retrieve: the last step must call a model (its answer "
                             "is the chain's)")
        if self.max_steps is not None and len(self.steps) > self.max_steps:
            raise ValueError(f"steps: {len(self.steps)} steps exceed max_steps {self.max_steps}")
        return self
