"""``re2_problem``: what ClickHouse's RE2 would refuse in a ``refusal_pattern``, found before a
query fails on it — syntax errors and the constructs RE2 lacks — while RE2's own syntax that
Python's ``re`` lacks (Unicode classes, flags mid-pattern) passes; ``bias.refusal_pattern`` in
the config is checked the same way."""

from __future__ import annotations

import pytest

from gateway.config import parse_config
from gateway.config.bias import re2_problem
from gateway.config.loader import ConfigError


@pytest.mark.parametrize(("pattern", "why"), [
    ("(", "missing ), unterminated subpattern"), ("abc[", "unterminated character set"),
    ("a(?=b)", "lookahead"), ("a(?!b)", "negative lookahead"), ("(?<=a)b", "lookbehind"),
    (r"(a)\1", "backreference"), ("(?P<n>a)(?P=n)", "backreference"), ("(?>a)", "atomic group"),
    ("a*+", "possessive quantifier"), ("a{2}+", "possessive quantifier"),
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
    with pytest.raises(ConfigError, match="bias.refusal_pattern.*not a valid RE2 regular expression: lookahead"):
        parse_config("backends: {m: {type: mock}}\nbias: {refusal_pattern: 'no(?= way)'}\n")
    assert parse_config("backends: {m: {type: mock}}\nbias: {refusal_pattern: '(?i)cannot'}\n")
