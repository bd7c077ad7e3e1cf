"""Gate syntax: what ``eval run --gate`` and ``evaluations.gates`` accept, and what a gate
decides on given values (reading the run from the store: tests/integration/test_eval_gates.py)."""

from __future__ import annotations

import pytest

from gateway.config import parse_config
from gateway.config.loader import ConfigError
from gateway.evals.gates import Gate, check_gates, parse_gate


@pytest.mark.parametrize(("text", "gate"), [
    ("judge>=0.8", Gate("judge>=0.8", "judge", ">=", 0.8)),
    (" exact == 1 ", Gate("exact == 1", "exact", "==", 1.0)),
    ("latency_p95_ms<2000", Gate("latency_p95_ms<2000", "latency_p95_ms", "<", 2000.0)),
    ("my.plugin:score>.5", Gate("my.plugin:score>.5", "my.plugin:score", ">", 0.5)),
    ("cost_usd<=1e-3", Gate("cost_usd<=1e-3", "cost_usd", "<=", 0.001)),
    ("delta>-0.25", Gate("delta>-0.25", "delta", ">", -0.25)),
])
def test_gates_parse(text, gate):
    assert parse_gate(text) == gate


@pytest.mark.parametrize("text", ["judge", "judge=>0.8", ">=0.8", "judge>=", "judge>=high", "judge != 1",
                                  "judge>=0.8 and exact>=1", "1judge>=0"])
def test_malformed_gates_are_refused(text):
    with pytest.raises(ValueError, match="expected <scorer><op><number>"):
        parse_gate(text)


def test_each_operator_decides_at_the_threshold():
    values = {"s": 0.8}
    assert check_gates(values, [parse_gate(g) for g in ("s>=0.8", "s<=0.8", "s==0.8")], "run r") == []
    assert check_gates(values, [parse_gate("s>0.8")], "run r") == ["s>0.8: s is 0.8 in run r"]
    assert check_gates(values, [parse_gate("s<0.8")], "run r") == ["s<0.8: s is 0.8 in run r"]


def test_a_gate_on_a_missing_or_unscored_measure_fails_and_says_why():
    failures = check_gates({"exact": None, "judge": 0.9}, [parse_gate("exact>=1"), parse_gate("regex>=1")], "run r")
    assert failures == ["exact>=1: run r has no exact score (every item unscored)",
                        "regex>=1: run r has no scorer or measure 'regex' (has: exact, judge)"]


def test_the_config_takes_gates_per_candidate_and_refuses_a_malformed_one():
    config = parse_config('evaluations: {gates: {"gpt-test": ["judge>=0.8"], "summarize@2": ["exact==1"]}}').config
    assert config.evaluations.gates == {"gpt-test": ["judge>=0.8"], "summarize@2": ["exact==1"]}
    with pytest.raises(ConfigError, match="bad gate 'judge=>0.8'"):
        parse_config('evaluations: {gates: {"gpt-test": ["judge=>0.8"]}}')
