"""The configuration reference and JSON Schema are generated from the config models: the
committed copies are current, every key has a meaning, and every config example in the docs
passes the schema an editor would use."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import jsonschema
import pytest
import yaml

from gateway.config.models import GatewayConfig
from gateway.config.reference import (
    REFERENCE_PATH,
    SCHEMA_PATH,
    json_schema,
    json_schema_text,
    markdown,
    missing_descriptions,
)
from tests.support.gateway import REPO

REGENERATE = "stale: regenerate with `python -m gateway.config.reference` and commit the result"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_the_committed_reference_is_current():
    assert (REPO / REFERENCE_PATH).read_text(encoding="utf-8") == markdown(), f"{REFERENCE_PATH} is {REGENERATE}"


def test_the_committed_schema_is_current():
    assert (REPO / SCHEMA_PATH).read_text(encoding="utf-8") == json_schema_text(), f"{SCHEMA_PATH} is {REGENERATE}"


def test_every_key_has_a_meaning_in_the_reference():
    assert missing_descriptions() == []
    text = markdown()
    for section in ("`server`", "`backends.<name>`", "`models.<name>.targets[]`", "`routing.circuit_breaker`",
                    "`telemetry.clickhouse`", "`observability.logging`", "`keys[]`", "`cache`"):
        assert f"\n## {section}\n" in text
    assert "| `first_byte` | number (> 0) | `120.0` | seconds from sending the request" in text
    assert "| `LLM_GATEWAY_CONFIG` |" in text


def test_config_schema_and_reference_commands(tmp_path):
    def run(*args):
        out = subprocess.run([sys.executable, "-m", "gateway", "config", *args], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        return out

    assert json.loads(run("schema").stdout) == json_schema()
    assert run("reference").stdout == markdown()
    run("schema", "-o", "gateway.schema.json")
    assert (tmp_path / "gateway.schema.json").read_text() == json_schema_text()


def config_blocks(markdown_text: str) -> list[tuple[int, dict]]:
    """``(line, data)`` of each YAML block whose top-level keys are all config sections."""
    out = []
    for m in re.finditer(r"```ya?ml\n(.*?)```", markdown_text, re.S):
        try:
            data = yaml.safe_load(m.group(1))
        except yaml.YAMLError as exc:
            pytest.fail(f"line {markdown_text[:m.start()].count(chr(10)) + 2}: not YAML: {exc}")
        if isinstance(data, dict) and data and set(map(str, data)) <= set(GatewayConfig.model_fields):
            out.append((markdown_text[:m.start()].count("\n") + 2, data))
    return out


def test_the_example_config_and_every_doc_example_pass_the_schema():
    validator = jsonschema.Draft202012Validator(json_schema())
    example = yaml.safe_load((REPO / "config" / "gateway.yaml").read_text())
    assert not list(validator.iter_errors(example))
    assert (REPO / "config" / "gateway.yaml").read_text().startswith(
        "# yaml-language-server: $schema=./gateway.schema.json\n")
    checked = 0
    for doc in DOCS:
        for line, data in config_blocks(doc.read_text(encoding="utf-8")):
            errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]
            assert not errors, f"{doc.relative_to(REPO)}:{line}: {errors}"
            checked += 1
    assert checked >= 15


def test_the_schema_catches_what_an_editor_should_flag():
    validator = jsonschema.Draft202012Validator(json_schema())
    ok = {"backends": {"m": {"type": "mock"}}, "models": {"x": {"targets": [{"backend": "m"}],
                                                               "fallback_on": [429, "timeout"]}}}
    assert not list(validator.iter_errors(ok))  # YAML's integer 429 is accepted, as by the gateway
    for bad in ({"models": {"x": {"target": [{"backend": "m"}]}}},  # a typo
                {"server": {"port": 70000}},  # out of range
                {"backends": {"m": {"type": "grpc"}}},  # not a backend type
                {"routing": {"fallback_on": [500]}}):  # not a failure class
        assert list(validator.iter_errors(bad)), bad


@pytest.mark.skipif(os.environ.get("LLM_GATEWAY_CONFIG") is not None, reason="the variable changes which file is read")
def test_the_reference_describes_the_resolution_order_the_code_uses():
    from gateway.config.resolve import SEARCHED

    text = markdown()
    for i, path in enumerate(SEARCHED, start=3):
        assert f"{i}. `./{path.as_posix()}`" in text
