"""Editing YAML in place (``gateway.cli.yaml_edit``): only the edited values change, every
comment, quote, flow style and key order stays; keys are added where they belong; an edit that
cannot be made exactly is refused and nothing is written."""

from __future__ import annotations

import pytest

from gateway.cli.yaml_edit import DROP, EditError, apply, load, plain, set_key

CONFIG = """\
# The fleet. Keep this comment.
backends:
  va: {type: vllm, base_url: "http://10.0.0.1:8000/v1"}   # the first server
models:
  tiny:
    targets: [{backend: va, model: tiny-llama}]
adapters:
  # support bot, fine-tuned weekly
  support-ft:
    base_model: tiny-llama
    versions: {1: /loras/s1, 2: /loras/s2}   # paths on the servers
    version: 1        # what is served
  sql-ft: {base_model: tiny-llama, versions: {3: /loras/q3, 4: /loras/q4}, version: 3}
labels:
  production: 2
  canary: {2: 90, 3: 10}  # an experiment
"""


def test_a_scalar_is_replaced_and_nothing_else_changes():
    out = set_key(CONFIG, ["adapters", "support-ft"], "version", 2)
    assert out == CONFIG.replace("    version: 1        # what is served", "    version: 2        # what is served")


def test_a_key_is_added_to_a_block_mapping_at_its_indentation():
    out = set_key(CONFIG, ["adapters", "support-ft"], "previous", [1])
    assert out == CONFIG.replace("    base_model: tiny-llama\n    versions: {1:",
                                 "    previous: [1]\n    base_model: tiny-llama\n    versions: {1:")
    assert plain(load(out)["adapters"]["support-ft"])["previous"] == [1]


def test_flow_mappings_and_flow_values():
    out = set_key(CONFIG, ["adapters", "sql-ft"], "version", 4)
    out = set_key(out, ["adapters", "sql-ft"], "previous", [3])
    assert "  sql-ft: {base_model: tiny-llama, versions: {3: /loras/q3, 4: /loras/q4}, version: 4, previous: [3]}\n" \
        in out
    out = set_key(out, ["labels"], "canary", 3)
    assert "  canary: 3  # an experiment\n" in out
    out = set_key(out, [], "previous", {"canary": [{2: 90, 3: 10}]})
    assert out.endswith("  canary: 3  # an experiment\nprevious: {canary: [{2: 90, 3: 10}]}\n")
    assert plain(load(out)["previous"]) == {"canary": [{2: 90, 3: 10}]}
    assert out.count("#") == CONFIG.count("#")


def test_a_value_over_several_lines_is_refused():
    text = CONFIG.replace("  canary: {2: 90, 3: 10}  # an experiment\n", "  canary:\n    2: 90\n    3: 10\n")
    with pytest.raises(EditError):
        apply(text, [(["labels"], "production", 3), (["labels"], "canary", 3)])
    assert apply(text, [(["labels"], "production", 3)]) == text.replace("production: 2", "production: 3")


def test_a_dropped_key_goes_with_its_line_or_its_comma():
    out = apply(CONFIG, [(["adapters", "support-ft"], "version", DROP), (["labels"], "canary", DROP)])
    assert out == CONFIG.replace("    version: 1        # what is served\n", "").replace(
        "  canary: {2: 90, 3: 10}  # an experiment\n", "")
    out = apply(CONFIG, [(["adapters", "sql-ft"], "version", DROP)])
    assert "  sql-ft: {base_model: tiny-llama, versions: {3: /loras/q3, 4: /loras/q4}}\n" in out
    out = apply(CONFIG, [(["adapters", "sql-ft"], "base_model", DROP)])
    assert "  sql-ft: {versions: {3: /loras/q3, 4: /loras/q4}, version: 3}\n" in out
    nested = "a: 1\nprevious:\n  production: [1]\nb: 2\n"
    assert apply(nested, [(["previous"], "production", DROP), ([], "previous", DROP)]) == "a: 1\nb: 2\n"


ANCHORED = """\
adapters:
  support-ft:
    versions: {1: /a, 2: /b, 3: /c}
    version: &cur 2   # served
  bad-ft: &ad {versions: {1: /a, 2: /b}, version: *cur}
  bad2-ft:
    <<: *ad
    base_model: tiny
"""


@pytest.mark.parametrize(("where", "key", "why"), [
    (["adapters", "support-ft"], "version", "is an anchor or alias"),  # &cur: its text is shared
    (["adapters", "bad-ft"], "version", "is an anchor"),  # the mapping is &ad (merged elsewhere)
    (["adapters", "bad2-ft"], "version", "comes from a merge key"),
    (["adapters", "bad2-ft"], "previous", None),  # a key of its own is added after `<<:`
])
def test_anchors_aliases_and_merge_keys_are_refused(where, key, why):
    if why is None:
        out = apply(ANCHORED, [(where, key, [2])])
        assert out == ANCHORED.replace("    <<: *ad\n", "    <<: *ad\n    previous: [2]\n")
        return
    with pytest.raises(EditError, match=why):
        apply(ANCHORED, [(where, key, 3)])
    text = ANCHORED.replace("version: &cur 2", "version: 2").replace("version: *cur", "version: 1")
    assert plain(load(apply(text, [(["adapters", "support-ft"], "version", 3)])))["adapters"]["support-ft"] \
        ["version"] == 3
