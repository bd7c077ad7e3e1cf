"""``re2_problem``: what ClickHouse's RE2 would refuse in a ``refusal_pattern``, asked of RE2
itself before a query fails on it — syntax errors and the constructs RE2 lacks (lookarounds,
backreferences, repetitions over 1000, comments, ``\\Z``, unknown POSIX classes) — while RE2's own
syntax that Python's ``re`` lacks (Unicode classes, flags mid-pattern) passes;
``bias.refusal_pattern`` in the config is checked the same way."""

from __future__ import annotations

import pytest

from gateway.config import parse_config
from gateway.config.bias import re2_problem
from gateway.config.loader import ConfigError


@pytest.mark.parametrize(("pattern", "why"), [
    ("(", "missing )"), ("abc[", "missing ]"),
    ("a(?=b)", "invalid perl operator: (?="), ("a(?!b)", "invalid perl operator: (?!"),
    ("(?<=a)b", "invalid perl operator: (?<="), (r"(a)\1", "invalid escape sequence: \\1"),
    ("(?P<n>a)(?P=n)", "invalid perl operator"), ("(?>a)", "invalid perl operator: (?>"),
    ("a*+", "bad repetition operator"), ("a{2}+", "bad repetition operator"),
    ("a{1001}", "invalid repetition size"), ("x(?#c)", "invalid perl operator: (?#"),
    (r"end\Z", "invalid escape sequence: \\Z"), ("[[:foo:]]", "invalid character class range"),
])
def test_what_re2_refuses(pattern, why):
    problem = re2_problem(pattern)
    assert problem is not None and why in problem


@pytest.mark.parametrize("pattern", [
    "(?i)(I can't|I cannot|I'm unable to) (help|assist)", r"\\1", r"a\++", "[(?=]", "[]a]", r"\pL+",
    r"\p{Greek}*", "x(?i)y", "cannot assist",
])
def test_what_re2_accepts(pattern):
    assert re2_problem(pattern) is None


def test_the_configs_pattern_is_checked():
    with pytest.raises(ConfigError, match=r"bias.refusal_pattern.*not a valid RE2 regular expression: invalid perl operator: \(\?="):
        parse_config("backends: {m: {type: mock}}\nbias: {refusal_pattern: 'no(?= way)'}\n")
    assert parse_config("backends: {m: {type: mock}}\nbias: {refusal_pattern: '(?i)cannot'}\n")
