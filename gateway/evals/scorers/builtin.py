"""The scorers that need nothing but the item and the output.

- ``exact``: 1 when the output equals the expected answer (ends' whitespace aside), else 0.
- ``normalized``: the same after Unicode NFKC, case folding, punctuation removed and
  whitespace collapsed.
- ``contains[=TEXT]``: the share of needles found in the output, compared normalized: TEXT,
  else the item's ``contains`` (a string or a list), else the expected answer.
- ``regex[=PATTERN]``: 1 when PATTERN (else the item's ``regex``) matches anywhere in the output.
- ``json[=SCHEMA.json]``: 1 when the output (a ```json fence unwrapped) is JSON and valid against
  the schema file (else the item's ``schema`` object; neither: any JSON).
- ``numeric[=TOL]``: 1 when the first number in the output is within TOL of the expected number
  (TOL absolute, or relative as ``5%``; else the item's ``tolerance``; default 0).

Each is ``None`` when its reference is missing (no expected answer, no pattern).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from gateway.evals.dataset import Item
from gateway.evals.scorers.base import Scorer, ScorerError, Verdict

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?```\s*$", re.DOTALL)
_NO_EXPECTED = Verdict(None, "the item has no expected answer")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


class Exact(Scorer):
    name = "exact"

    def __init__(self, arg: str | None):
        if arg:
            raise ScorerError(f"{self.name} takes no argument")

    def same(self, a: str, b: str) -> bool:
        return a.strip() == b.strip()

    async def score(self, item: Item, output: str) -> Verdict:
        if item.expected is None:
            return _NO_EXPECTED
        if self.same(output, item.expected):
            return Verdict(1.0)
        return Verdict(0.0, f"expected {item.expected[:200]!r}")


class Normalized(Exact):
    name = "normalized"

    def same(self, a: str, b: str) -> bool:
        return normalize(a) == normalize(b)


class Contains(Scorer):
    name = "contains"

    def __init__(self, arg: str | None):
        self.fixed = arg

    async def score(self, item: Item, output: str) -> Verdict:
        needles: Any = self.fixed or item.data.get("contains") or item.expected
        if needles is None:
            return _NO_EXPECTED
        if isinstance(needles, str):
            needles = [needles]
        if not isinstance(needles, list) or not needles:
            return Verdict(None, error="the item's contains must be a string or a non-empty list")
        text = normalize(output)
        missing = [n for n in needles if normalize(str(n)) not in text]
        reason = f"missing {', '.join(repr(m) for m in missing[:5])}" if missing else ""
        return Verdict((len(needles) - len(missing)) / len(needles), reason)


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ScorerError(f"{where}: bad regular expression {pattern!r}: {exc}") from None


class Regex(Scorer):
    name = "regex"

    def __init__(self, arg: str | None):
        self.fixed = _compile(arg, "regex") if arg else None

    async def score(self, item: Item, output: str) -> Verdict:
        pattern = self.fixed
        if pattern is None:
            if not isinstance(item.data.get("regex"), str):
                return Verdict(None, "no pattern (give regex=PATTERN or the item's regex)")
            try:
                pattern = _compile(item.data["regex"], "the item's regex")
            except ScorerError as exc:
                return Verdict(None, error=str(exc))
        if pattern.search(output):
            return Verdict(1.0)
        return Verdict(0.0, f"no match for {pattern.pattern[:200]!r}")


class JsonValid(Scorer):
    """Schema validation with ``jsonschema`` (imported when a schema is first used)."""

    name = "json"

    def __init__(self, arg: str | None):
        self.fixed: Any = None
        if arg:
            try:
                self.fixed = orjson.loads(Path(arg).read_bytes())
            except (OSError, orjson.JSONDecodeError) as exc:
                raise ScorerError(f"json: cannot read the schema {arg}: {exc}") from None
            self._validator(self.fixed)  # a broken schema is refused before any call

    @staticmethod
    def _validator(schema: Any):
        import jsonschema

        try:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ScorerError(f"json: invalid schema: {exc.message}") from None
        return cls(schema)

    async def score(self, item: Item, output: str) -> Verdict:
        fence = _FENCE.match(output)
        try:
            value = orjson.loads(fence.group(1) if fence else output)
        except orjson.JSONDecodeError as exc:
            return Verdict(0.0, f"not JSON: {exc}")
        schema = self.fixed if self.fixed is not None else item.data.get("schema")
        if schema is None:
            return Verdict(1.0)
        try:
            validator = self._validator(schema)
        except ScorerError as exc:
            return Verdict(None, error=str(exc))
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "(root)"
            return Verdict(0.0, f"{where}: {errors[0].message}"[:500])
        return Verdict(1.0)


def _number(text: str) -> float | None:
    m = _NUMBER.search(text)
    if m is None:
        return None
    try:
        return float(m.group(0).replace(",", ""))
    except ValueError:
        return None


class Numeric(Scorer):
    name = "numeric"

    def __init__(self, arg: str | None):
        self.fixed = self._tolerance(arg, "numeric") if arg else None

    @staticmethod
    def _tolerance(value: Any, where: str) -> tuple[float, bool]:
        """``(tolerance, relative)``."""
        text = str(value).strip()
        relative = text.endswith("%")
        try:
            tol = float(text.rstrip("%"))
        except ValueError:
            raise ScorerError(f"{where}: tolerance must be a number or a percentage, got {value!r}") from None
        return (tol / 100 if relative else tol), relative

    async def score(self, item: Item, output: str) -> Verdict:
        if item.expected is None:
            return _NO_EXPECTED
        want = _number(item.expected)
        if want is None:
            return Verdict(None, error=f"no number in the expected answer {item.expected[:100]!r}")
        try:
            tol, relative = self.fixed or self._tolerance(item.data.get("tolerance", 0), "the item's tolerance")
        except ScorerError as exc:
            return Verdict(None, error=str(exc))
        got = _number(output)
        if got is None:
            return Verdict(0.0, "no number in the output")
        limit = tol * abs(want) if relative else tol
        if abs(got - want) <= limit:
            return Verdict(1.0)
        return Verdict(0.0, f"{got:g} is not within {limit:g} of {want:g}")


BUILTIN: dict[str, Callable[[str | None], Scorer]] = {
    cls.name: cls for cls in (Exact, Normalized, Contains, Regex, JsonValid, Numeric)}

__all__ = ["BUILTIN", "normalize"]
