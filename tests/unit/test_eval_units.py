"""The pure parts of evaluations: reading items, parsing a judge's answer, the statistics, and
the scorers' edge cases (the whole run, over HTTP and chDB: tests/integration/test_evals.py)."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.evals.dataset import DatasetError, from_objects, to_item
from gateway.evals.scorers import ScorerError, build_scorers
from gateway.evals.scorers.models import parse_judgement
from gateway.evals.stats import mean_ci, paired, quantile


def score(spec: str, item, output: str):
    [scorer] = build_scorers([spec])
    return asyncio.run(scorer.score(item, output))


@pytest.mark.parametrize(("text", "expected"), [
    ('{"score": 0.7, "reason": "mostly right"}', (0.7, "mostly right")),
    ('Here you go:\n```json\n{"score": "4/5", "explanation": "close"}\n```', (0.8, "close")),
    ("Score: 3/4\nReason: misses a step", (0.75, "misses a step")),
    ("score = 0.5", (0.5, "")),
    ("  1 ", (1.0, "")),
])
def test_a_judges_answer_becomes_a_score_and_a_reason(text, expected):
    assert parse_judgement(text) == expected


@pytest.mark.parametrize("text", ["I cannot judge this.", '{"score": "high"}', '{"score": true}'])
def test_an_answer_without_a_score_is_no_score(text):
    got, why = parse_judgement(text)
    assert got is None and why


@pytest.mark.parametrize(("text", "why"), [
    ("score: -5", "the judge's score -5 is outside 0..1"),
    ("Score: -0.5\nReason: bad", "the judge's score -0.5 is outside 0..1"),
    ('{"score": -1}', "the judge's score -1 is outside 0..1"),
    ("score: 8", "the judge's score 8 is outside 0..1"),
    ("Score: 8/0", "the judge's score 8/0 has no positive scale"),
    ('{"score": "3/-4"}', "the judge's score 3/-4 has no positive scale"),
    ("score: 12/10", "the judge's score 12/10 is outside 0..1"),
])
def test_a_score_outside_the_rubrics_range_is_no_score(text, why):
    assert parse_judgement(text) == (None, why + " (give a score from 0 to 1, or X/N)"
                                     if "outside" in why else why)


def test_items_of_each_shape():
    chat = to_item(0, {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                    {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]}],
                       "request_id": "r1"})
    assert (chat.messages[-1]["content"], chat.expected, chat.item_id, chat.input_text()) == ("Hi", "Hello", "r1", "Hi")
    plain = to_item(1, {"input": "2+2?", "expected": 4, "variables": {"x": 1}})
    assert (plain.messages, plain.expected, plain.variables) == ([{"role": "user", "content": "2+2?"}], "4", {"x": 1})
    row = to_item(2, {"request_body": json.dumps({"messages": [{"role": "user", "content": "Q"}]}),
                      "response_body": json.dumps({"choices": [{"message": {"role": "assistant", "content": "A"}}]}),
                      "stream": False})
    assert (row.messages, row.expected) == ([{"role": "user", "content": "Q"}], "A")
    open_ended = to_item(3, {"messages": [{"role": "user", "content": "Tell me a story"}]})
    assert open_ended.expected is None


def test_bad_items_name_their_place():
    with pytest.raises(DatasetError, match="data.jsonl: item 2: an item needs messages, input, or request_body"):
        from_objects("data.jsonl", [{"input": "ok"}, {"question": "?"}], "item")
    with pytest.raises(DatasetError, match="request_body is not JSON"):
        to_item(0, {"request_body": '{"messages": [', "response_body": ""})
    with pytest.raises(DatasetError, match="no items"):
        from_objects("empty.jsonl", [])


def test_the_dataset_hash_follows_the_content_not_the_key_order():
    a = from_objects("a", [{"input": "x", "expected": "y"}])
    b = from_objects("b", [{"expected": "y", "input": "x"}])
    c = from_objects("c", [{"input": "x", "expected": "z"}])
    assert a.content_hash == b.content_hash != c.content_hash


def test_the_t_interval_and_the_paired_test():
    iv = mean_ci([1.0, 2.0, 3.0, 4.0])  # mean 2.5, s = 1.2910, t(0.975, 3) = 3.1824
    assert iv.mean == 2.5 and iv.low == pytest.approx(2.5 - 3.1824 * 1.2910 / 2, abs=1e-3)
    assert iv.high == pytest.approx(2.5 + 3.1824 * 1.2910 / 2, abs=1e-3)
    assert mean_ci([0.5]) == type(iv)(1, 0.5, None, None) and mean_ci([]).mean is None
    same = paired([1.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    assert same.p_value == 1.0 and same.significant is False and same.diff.mean == 0.0
    # every difference the same non-zero number: no variance, the test is undefined (not "p = 0")
    shifted = paired([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    assert shifted.p_value is None and shifted.significant is None and shifted.note == "no variance"
    two = paired([0.9, 0.7], [0.4, 0.2], (0.0, 1.0))
    assert two.p_value is None and two.note == "no variance" and two.diff.mean == pytest.approx(0.5)
    # differences 0.4, -0.1, 0.3, 0.35, 0.15: mean 0.22, s = 0.2019, t = 2.437 on 4 df, two-sided p = 0.0714
    noisy = paired([0.9, 0.8, 0.7, 0.95, 0.85], [0.5, 0.9, 0.4, 0.6, 0.7])
    assert noisy.diff.mean == pytest.approx(0.22) and noisy.p_value == pytest.approx(0.0714, abs=1e-4)
    assert noisy.significant is False
    assert paired([1.0], [0.0]).p_value is None and paired([1.0], [0.0]).note == "too few pairs"
    assert quantile([10.0, 20.0, 30.0, 40.0], 0.5) == 25.0 and quantile([], 0.5) is None


def test_scorers_edge_cases(tmp_path):
    item = to_item(0, {"input": "How much?", "expected": "The total is 1,000 dollars", "tolerance": "5%"})
    assert score("numeric", item, "about 1040").score == 1.0
    assert score("numeric", item, "about 1060").score == 0.0
    assert score("numeric=100", item, "1099").score == 1.0
    assert score("numeric", item, "no idea").reason == "no number in the output"
    assert score("contains=TOTAL", item, "the total").score == 1.0
    assert score("regex=^\\d+$", item, "42").score == 1.0
    assert score("json", item, '```json\n{"a": 1}\n```').score == 1.0
    assert score("regex", item, "x").score is None  # no pattern anywhere: does not apply
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object", "required": ["a"]}')
    assert score(f"json={schema}", item, '{"b": 1}').reason == "(root): 'a' is a required property"
    schema.write_text('{"type": "nonsense"}')
    for spec, message in ((f"json={schema}", "invalid schema"), ("regex=(", "bad regular expression"),
                          ("numeric=lots", "tolerance must be a number"), ("exact=x", "takes no argument"),
                          ("judge", "judge: no model"), ("nope:missing", "cannot load scorer"),
                          ("exact,judge", "unknown scorer")):
        with pytest.raises(ScorerError, match=message):
            build_scorers([spec])
    with pytest.raises(ScorerError, match="given twice"):
        build_scorers(["exact", "exact"])


def test_intervals_stay_within_the_scores_range():
    # 0/1 scores: Wilson's interval (n = 2, p = 0.5: 0.5 ± 0.4055), never beyond [0, 1] nor [1, 1] at p = 1
    half = mean_ci([1.0, 0.0])
    assert (half.low, half.high) == (pytest.approx(0.0945, abs=1e-4), pytest.approx(0.9055, abs=1e-4))
    ones = mean_ci([1.0, 1.0, 1.0])
    assert ones.high == 1.0 and ones.low == pytest.approx(0.4385, abs=1e-4)
    # other scores of a bounded scorer: the t-interval clipped to its range
    wide = mean_ci([0.1, 0.9], (0.0, 1.0))
    assert (wide.low, wide.high) == (0.0, 1.0)
    assert mean_ci([0.1, 0.9]).low < 0  # a plugin's: unclipped
    # differences: not a proportion, clipped to ± the range's width
    diff = paired([1.0, 0.0, 1.0], [0.0, 0.0, 0.0], (0.0, 1.0))
    assert diff.diff.low >= -1.0 and diff.diff.high == 1.0 and diff.p_value is not None
