"""LoRA adapters on vLLM servers, against fake vLLM servers on loopback (``FakeVllm`` serves
vLLM's runtime LoRA endpoints and lists loaded adapters in ``/v1/models``): the gateway loads
an adapter on every server of its base model at start, loads a promoted version in place and
unloads a dropped adapter on reload, reports a failed load per server in ``/admin/vllm`` and
retries it, and serves the adapter as a public model. Managed servers' command lines:
``tests/unit/test_vllm_adapter_units.py``."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import WATCHER
from tests.support.fake_upstream import FakeVllm
from tests.support.gateway import serve
from tests.support.polling import wait_for
from tests.support.vllm_fleet import MSG, backend_status


def adapter_config(a, b, *, version: int = 1, adapters: bool = True) -> str:
    scrape = "{scrape_interval_ms: 40, timeout_ms: 500}"
    block = f"""
adapters:
  support-ft:
    base_model: tiny-llama
    versions: {{1: /loras/support-v1, 2: /loras/support-v2}}
    version: {version}
""" if adapters else ""
    target = "\n  support-ft: {targets: [{backend: va, model: support-ft}, {backend: vb, model: support-ft}]}" \
        if adapters else ""
    return f"""
telemetry: {{enabled: false}}
server: {{reload_interval_s: 0.05}}
backends:
  va: {{type: vllm, base_url: "{a.url}", vllm: {scrape}}}
  vb: {{type: vllm, base_url: "{b.url}", vllm: {scrape}}}
  other: {{type: mock}}
models:
  tiny: {{targets: [{{backend: va, model: tiny-llama}}, {{backend: vb, model: tiny-llama}}]}}{target}
routing: {{retry: {{attempts: 1}}}}
{block}"""


def adapters_of(gw, backend: str):
    return backend_status(gw, backend)["adapters"]


def test_adapters_are_loaded_on_start_promoted_in_place_and_unloaded(tmp_path):
    path = tmp_path / "gateway.yaml"
    with FakeVllm("vllm-a") as a, FakeVllm("vllm-b") as b:
        for fake in (a, b):
            fake.base_models = {"tiny-llama"}
        path.write_text(adapter_config(a, b))
        with serve(path=path) as gw:
            wait_for(lambda: adapters_of(gw, "va") == {"support-ft": "loaded"}
                     and adapters_of(gw, "vb") == {"support-ft": "loaded"}, what="the adapter loaded on both")
            assert a.loras == b.loras == {"support-ft": "/loras/support-v1"}
            assert a.lora_calls == [("load_lora_adapter", {"lora_name": "support-ft",
                                                           "lora_path": "/loras/support-v1"})]
            # The adapter is a model: a completion for it reaches the server under its name.
            r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "support-ft", "messages": MSG}, timeout=10)
            assert r.status_code == 200, r.text
            assert (a.received + b.received)[-1].json()["model"] == "support-ft"

            # Promote: the new version's path replaces the old one under the same name.
            path.write_text(adapter_config(a, b, version=2))
            wait_for(lambda: a.loras == b.loras == {"support-ft": "/loras/support-v2"}, what="version 2 loaded")
            assert a.lora_calls[-1] == ("load_lora_adapter", {"lora_name": "support-ft",
                                                              "lora_path": "/loras/support-v2", "load_inplace": True})
            wait_for(lambda: adapters_of(gw, "va") == {"support-ft": "loaded"}, what="reported loaded")

            # Dropped from the config: unloaded.
            reloads = gw.app[WATCHER].reloads
            path.write_text(adapter_config(a, b, adapters=False))
            wait_for(lambda: gw.app[WATCHER].reloads > reloads, what="the reload")
            wait_for(lambda: a.loras == b.loras == {}, what="the dropped adapter unloaded")
            assert a.lora_calls[-1] == ("unload_lora_adapter", {"lora_name": "support-ft"})
            assert adapters_of(gw, "va") is None


def test_a_failed_load_is_reported_per_server_and_retried(tmp_path):
    path = tmp_path / "gateway.yaml"
    with FakeVllm("vllm-a") as a, FakeVllm("vllm-b") as b:
        a.lora_error = (400, "LoRA rank 64 is greater than max_lora_rank 16.")
        b.lora_enabled = False
        path.write_text(adapter_config(a, b))
        with serve(path=path) as gw:
            wait_for(lambda: adapters_of(gw, "va")["support-ft"].startswith("failed")
                     and adapters_of(gw, "vb")["support-ft"].startswith("failed"), what="both loads failed")
            assert adapters_of(gw, "va") == {
                "support-ft": "failed: HTTP 400: LoRA rank 64 is greater than max_lora_rank 16."}
            assert "--enable-lora" in adapters_of(gw, "vb")["support-ft"]
            assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" in adapters_of(gw, "vb")["support-ft"]
            # Fixed on the server: the retry loads it, with no reload.
            a.lora_error = None
            b.lora_enabled = True
            wait_for(lambda: adapters_of(gw, "va") == adapters_of(gw, "vb") == {"support-ft": "loaded"},
                     timeout=15, what="the retries loaded it")
            assert a.loras == {"support-ft": "/loras/support-v1"}


def test_config_errors_name_the_adapter():
    from gateway.config import parse_config
    from gateway.config.loader import ConfigError

    base = """
backends:
  va: {type: vllm, base_url: "http://127.0.0.1:9/v1"}
  hosted: {type: openai, base_url: "https://api.example.com/v1"}
models:
  tiny: {targets: [{backend: va, model: tiny-llama}]}
  ft: {targets: [{backend: hosted, model: support-ft}]}
  canary: {sticky: true, targets: [{backend: va, model: tiny-llama}]}
adapters:
  support-ft: {base_model: tiny-llama, versions: {1: /loras/a}, version: 2, previous: [3]}
  orphan: {base_model: llama-70b, versions: {1: /loras/b}, version: 1}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(base)
    text = str(caught.value)
    assert "adapters.support-ft.version: 2 is not one of versions (1)" in text
    assert "adapters.support-ft.previous: 3 is not one of versions" in text
    assert 'adapters.orphan: no type: vllm backend serves it or its base model "llama-70b"' in text
    assert 'models.ft.targets[0]: adapter "support-ft" needs a type: vllm backend, not "hosted"' in text
    assert "sticky: only for strategy: weighted (this model's strategy is priority)" in text
