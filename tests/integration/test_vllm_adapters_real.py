"""A LoRA adapter on a real vLLM server (CPU build, the tiny model) that the gateway launches:
the adapter is built offline for the tiny model (``loadtest/vllm_tiny_lora.py``: two versions),
the server starts with ``--enable-lora`` and version 1 (``--lora-modules``), the gateway reports
it loaded and serves it as a model (its answers differ from the base model's), and
``adapters promote`` loads version 2 in place through vLLM's runtime endpoint while the server
keeps running."""

from __future__ import annotations

import subprocess

import httpx
import pytest
from click.testing import CliRunner

from gateway.cli.commands import main
from loadtest import vllm_server as vs
from tests.support.gateway import REPO, serve
from tests.support.polling import wait_for
from tests.support.vllm import _unavailable
from tests.support.vllm_fleet import backend_status

pytestmark = pytest.mark.vllm


def build_lora(python, out, seed: int):
    subprocess.run([str(python), "-P", str(REPO / "loadtest" / "vllm_tiny_lora.py"), str(out), "--seed", str(seed)],
                   check=True, capture_output=True, text=True)
    return out


def answer(client: httpx.Client, gw, model: str) -> str:
    r = client.post(f"{gw.url}/v1/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": "Which kettle should I buy?"}],
        "max_tokens": 12, "temperature": 0})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def served_roots(port: int) -> dict[str, str]:
    try:
        doc = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()
    except httpx.HTTPError:
        return {}
    return {m["id"]: m.get("root") for m in doc["data"]}


def loaded(gw) -> bool:
    try:
        return backend_status(gw, "real")["adapters"] == {"support-ft": "loaded"}
    except httpx.TimeoutException:  # two saturated cores can starve the admin call
        return False


def test_a_lora_adapter_on_a_real_vllm_is_served_and_promoted(tmp_path):
    python = vs.vllm_python()
    if not python.exists():
        _unavailable(f"vLLM venv python {python} not found: run `bash tests/vllm/setup_venv.sh`")
    model = vs.build_model(python)
    v1, v2 = build_lora(python, tmp_path / "lora-v1", 1), build_lora(python, tmp_path / "lora-v2", 2)
    port = vs.free_port()
    log = tmp_path / "real.log"
    env = "{" + ", ".join(f'{k}: "{v}"' for k, v in vs.VLLM_ENV.items()) + "}"
    path = tmp_path / "gateway.yaml"
    path.write_text(f"""
# a real vLLM with a LoRA adapter
server: {{reload_interval_s: 0.1}}
telemetry: {{enabled: false}}
backends:
  real:
    type: vllm
    base_url: http://127.0.0.1:{port}/v1
    vllm: {{scrape_interval_ms: 500, timeout_ms: 10000, down_after: 5}}
    launch:
      model: "{model}"
      served_model_name: {vs.SERVED_MODEL_NAME}
      python: "{python}"
      args: {vs.VLLM_ARGS}
      env: {env}
      log_file: "{log}"
      startup_timeout_s: {vs.startup_timeout()}
      stop_timeout_s: 20
models:
  tiny: {{targets: [{{backend: real, model: {vs.SERVED_MODEL_NAME}}}]}}
  support: {{targets: [{{backend: real, model: support-ft}}]}}
routing: {{retry: {{attempts: 1}}}}
adapters:
  support-ft:   # built by loadtest/vllm_tiny_lora.py
    base_model: {vs.SERVED_MODEL_NAME}
    versions: {{1: "{v1}", 2: "{v2}"}}
    version: 1
    max_rank: 8
""")
    try:
        with serve(path=path) as gw, httpx.Client(timeout=300) as client:
            wait_for(lambda: loaded(gw), timeout=vs.startup_timeout(), interval=1.0,
                     what="the adapter loaded on the real server")
            assert served_roots(port)["support-ft"] == str(v1)
            base, adapted = answer(client, gw, "tiny"), answer(client, gw, "support")
            assert adapted != base, (base, adapted)  # the adapter's weights are applied

            out = CliRunner().invoke(main, ["adapters", "promote", "support-ft", "2", "--config", str(path)])
            assert out.exit_code == 0, out.output
            wait_for(lambda: served_roots(port).get("support-ft") == str(v2), timeout=120, interval=0.5,
                     what="version 2 loaded in place")
            wait_for(lambda: loaded(gw), timeout=60, what="reported loaded")
            assert answer(client, gw, "support") != adapted  # version 2's weights
    except AssertionError:
        print(vs.tail(log))
        raise
