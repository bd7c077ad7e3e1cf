"""Managed vLLM servers serving LoRA adapters: the command line and environment the launcher
uses, and which config changes restart a managed server (an added adapter: one more LoRA
slot) and which do not (a promoted version: loaded at run time). The sticky weighted split
of a canary between a base model and its adapter."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

from gateway.config import parse_config
from gateway.config.adapters import adapters_of_backends
from gateway.config.models import Target
from gateway.routing.health import HealthRegistry
from gateway.routing.plan import Candidate
from gateway.routing.strategies import Weighted
from gateway.vllm.fleet import Fleet
from gateway.vllm.launcher import ManagedServer, launch_argv

CONFIG = """
backends:
  gpu0:
    type: vllm
    base_url: http://127.0.0.1:8001/v1
    launch: {{model: /models/tiny, served_model_name: tiny-llama, python: /opt/vllm/bin/python,
              args: [--max-num-seqs, "2"], env: {{CUDA_VISIBLE_DEVICES: "0"}}}}
  plain: {{type: vllm, base_url: http://127.0.0.1:8002/v1}}
models:
  tiny: {{targets: [{{backend: gpu0, model: tiny-llama}}]}}
  other: {{targets: [{{backend: plain, model: other-base}}]}}
adapters:
  support-ft: {{base_model: tiny-llama, versions: {{1: /loras/s1, 2: /loras/s2}}, version: {version}, max_rank: 8}}
  sql-ft: {{base_model: tiny-llama, versions: {{3: /loras/q3}}, version: 3, max_rank: 32}}
{more}"""


def config(version: int = 1, more: str = ""):
    return parse_config(CONFIG.format(version=version, more=more)).config


def test_launch_argv_enables_lora_with_rank_slots_and_modules():
    cfg = config()
    lora = adapters_of_backends(cfg)
    assert set(lora) == {"gpu0"}  # "plain" serves another base model
    b = cfg.backends["gpu0"]
    assert launch_argv(b, b.launch, lora["gpu0"]) == [
        "/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--model", "/models/tiny",
        "--host", "127.0.0.1", "--port", "8001", "--served-model-name", "tiny-llama",
        "--enable-lora", "--max-lora-rank", "32", "--max-loras", "2",
        "--lora-modules", "sql-ft=/loras/q3", "support-ft=/loras/s1", "--max-num-seqs", "2"]
    server = ManagedServer("gpu0", b, b.launch, Path("/tmp/x.log"), on_exit=lambda r: None,
                           healthy=lambda: False, adapters=lora["gpu0"])
    assert server.env == {"CUDA_VISIBLE_DEVICES": "0", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    plain = ManagedServer("gpu0", b, b.launch, Path("/tmp/x.log"), on_exit=lambda r: None, healthy=lambda: False)
    assert "--enable-lora" not in plain.argv and plain.env == {"CUDA_VISIBLE_DEVICES": "0"}


def test_a_promoted_version_keeps_the_server_an_added_adapter_restarts_it():
    fleet = Fleet(HealthRegistry(), Path("/tmp"))
    fleet._lora = adapters_of_backends(config(1))
    b = config(1).backends["gpu0"]
    before = fleet._launch_spec("gpu0", b, b.launch)
    fleet._lora = adapters_of_backends(config(2))
    assert fleet._launch_spec("gpu0", b, b.launch) == before
    more = "  third-ft: {base_model: tiny-llama, versions: {1: /loras/t1}, version: 1}\n"
    fleet._lora = adapters_of_backends(config(2, more))
    assert fleet._launch_spec("gpu0", b, b.launch) != before


def _first(weights: dict[str, float], key: str) -> str:
    cands = [Candidate(Target(backend="va", model=m, weight=w), None, m, SimpleNamespace(key=f"va/{m}"))  # type: ignore[arg-type]
             for m, w in weights.items()]
    return Weighted().rank(cands, False, random.Random(), sticky_key=key)[0].upstream_model


def test_sticky_weighted_split_follows_weights_and_growing_an_arm_only_moves_callers_onto_it():
    keys = [f"support\0u:caller-{i}" for i in range(4000)]
    at_10 = {k: _first({"base": 90, "ft": 10}, k) for k in keys}
    at_50 = {k: _first({"base": 50, "ft": 50}, k) for k in keys}
    assert 300 < list(at_10.values()).count("ft") < 500  # ~10 %
    assert 1800 < list(at_50.values()).count("ft") < 2200  # ~50 %
    assert all(at_50[k] == "ft" for k in keys if at_10[k] == "ft")  # nobody left the adapter
    assert {k: _first({"base": 90, "ft": 10}, k) for k in keys} == at_10  # the same key, the same arm
