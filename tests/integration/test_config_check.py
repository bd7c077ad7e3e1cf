"""``check-config``: every problem of a file in one pass, the nearest key for a typo, URLs
with a scheme, YAML's integer ``429``, and the README's own config examples."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from gateway.config import ConfigError, parse_config
from gateway.config.models import GatewayConfig
from tests.support.gateway import REPO

BROKEN = """\
backends:
  a: {type: openai, base_url: api.example.com/v1}
  b: {type: mock, timeout: {connect: 1}}
models:
  chat:
    target: [{backend: a}]
  other:
    targets: [{backend: missing}]
routes:
  - {name: r1, match: {modle: "chat*"}, model: chat}
  - {name: r2, model: nowhere}
server: {port: high}
"""
EXPECTED = [
    "backends.a.base_url: must start with http:// or https:// (e.g. http://api.example.com/v1), "
    "not 'api.example.com/v1'",
    'backends.b.timeout: unknown key "timeout" (did you mean "timeouts"?)',
    'models.chat.target: unknown key "target" (did you mean "targets"?)',
    'routes[0].match.modle: unknown key "modle" (did you mean "model"?)',
    "server.port: Input should be a valid integer, unable to parse string as an integer",
    # the cross-references, in the same pass (an invalid entry still counts as defined)
    'models.other.targets[0].backend: unknown backend "missing" (known: a, b)',
    'routes[1].model: unknown model "nowhere"',
]


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_every_problem_in_one_pass():
    assert sorted(problems(BROKEN)) == sorted(EXPECTED)


def test_check_config_prints_them_all_at_once(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(BROKEN)
    out = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(path)], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [f"{path}: invalid config"] + [f"  {p}" for p in problems(BROKEN)]
    assert all(p in out.stderr for p in EXPECTED)


def test_an_unknown_key_without_a_near_one_lists_the_known_keys():
    assert problems("cache: {colour: blue}\n") == [
        'cache.colour: unknown key "colour" (known: ' + ", ".join(
            GatewayConfig.model_fields["cache"].annotation.model_fields) + ")"]


def test_a_base_url_needs_a_scheme():
    assert problems("backends:\n  v: {type: vllm, base_url: '10.0.0.5:8000/v1'}\n") == [
        "backends.v.base_url: must start with http:// or https:// (e.g. http://10.0.0.5:8000/v1), "
        "not '10.0.0.5:8000/v1'"]
    ok = parse_config("backends:\n  v: {type: vllm, base_url: 'HTTP://10.0.0.5:8000/v1'}\n")
    assert ok.config.backends["v"].base_url == "HTTP://10.0.0.5:8000/v1"


def test_yaml_integer_429_is_the_failure_class_429():
    snap = parse_config("""
backends: {m: {type: mock}}
models:
  x: {targets: [{backend: m}], fallback_on: [429, timeout], retry: {retry_on: [429]}}
routing:
  retry: {retry_on: [connect, 429]}
  fallback_on: [429]
""")
    cfg = snap.config
    assert cfg.routing.retry.retry_on == ["connect", "429"] and cfg.routing.fallback_on == ["429"]
    assert cfg.models["x"].fallback_on == ["429", "timeout"] and cfg.models["x"].retry.retry_on == ["429"]
    assert problems("routing: {fallback_on: [500]}\n") == [
        "routing.fallback_on[0]: Input should be 'connect', 'timeout', '5xx', '429', 'context_length_exceeded' or 'not_found'"]
    assert problems("routing: {fallback_on: [true]}\n")  # a boolean is not a status


def config_blocks(markdown: str) -> list[tuple[int, str]]:
    """``(line, text)`` of each YAML block whose top-level keys are all config sections."""
    out = []
    for m in re.finditer(r"```ya?ml\n(.*?)```", markdown, re.S):
        data = yaml.safe_load(m.group(1))
        if isinstance(data, dict) and data and set(map(str, data)) <= set(GatewayConfig.model_fields):
            out.append((markdown[:m.start()].count("\n") + 2, m.group(1)))
    return out


def test_the_readme_config_examples_are_valid_configs(monkeypatch):
    blocks = config_blocks((REPO / "README.md").read_text())
    assert len(blocks) >= 5  # the reference example, routing, observability, access, vLLM…
    for line, text in blocks:
        for name in set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)):
            monkeypatch.setenv(name, os.environ.get(name) or "value-from-env")
        try:
            parse_config(text, f"README.md:{line}")
        except ConfigError as exc:
            pytest.fail(str(exc))
