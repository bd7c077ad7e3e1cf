"""Pydantic model of the ``bias:`` section of ``gateway.yaml`` (bias monitoring: see
``gateway/bias/`` and docs/llmops.md)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

# What RE2 (ClickHouse's regex engine) refuses that Python's ``re`` accepts: lookarounds,
# atomic groups, conditionals, named backreferences ...
_RE2_UNSUPPORTED_GROUPS = (("(?=", "lookahead"), ("(?!", "negative lookahead"), ("(?<=", "lookbehind"),
                           ("(?<!", "negative lookbehind"), ("(?>", "atomic group"), ("(?P=", "backreference"),
                           ("(?(", "conditional"))
# ... and what RE2 accepts that ``re`` does not, neutralised before ``re`` compiles the rest:
# Unicode classes (\pL, \p{Greek}) and flags in the middle of the pattern.
_RE2_ONLY = re.compile(r"\\[pP](?:\{[^}]*\}|[A-Za-z])|\(\?[imsU]+\)")


def re2_problem(pattern: str) -> str | None:
    """Why ClickHouse's RE2 would refuse ``pattern`` (``None`` when it would not, as far as a
    check without RE2 can tell: Python's ``re`` must compile it, and it must use none of the
    constructs RE2 lacks: lookarounds, backreferences, atomic groups, possessive quantifiers)."""
    in_class, i = False, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if not in_class and pattern[i + 1:i + 2] in tuple("123456789"):
                return f"backreference \\{pattern[i + 1]} (RE2 has none)"
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += 2 if pattern[i + 1:i + 2] == "]" else 1  # "[]...]": the first ] is a member
            continue
        elif c == "(":
            for start, what in _RE2_UNSUPPORTED_GROUPS:
                if pattern.startswith(start, i):
                    return f"{what} {start!r} (RE2 has none)"
        elif c == "+" and i and pattern[i - 1] in "*+?}" and (i < 2 or pattern[i - 2] != "\\"):
            return "possessive quantifier (RE2 has none)"
        i += 1
    try:
        re.compile(_RE2_ONLY.sub(lambda m: "x" if m.group().startswith("\\") else "", pattern))
    except re.error as exc:
        return str(exc)
    return None


class BiasSettings(BaseModel):
    """Defaults of ``llm-gateway bias`` and the dashboard's Bias panel (docs/llmops.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    refusal_pattern: str | None = Field(None, max_length=1000, description=(
        "RE2 regular expression over the logged response body (telemetry.bodies.response) that marks an "
        "answer as a refusal, besides finish reason content_filter and a refusal field; --refusal-pattern "
        "overrides it"))

    @field_validator("refusal_pattern")
    @classmethod
    def _re2(cls, value: str | None) -> str | None:
        problem = re2_problem(value) if value else None
        if problem:
            raise ValueError(f"not a valid RE2 regular expression: {problem}")
        return value


__all__ = ["BiasSettings", "re2_problem"]
