"""vLLM fleets, deterministic parts: metrics parsing, the ``vllm-load`` score and order,
prefix affinity (consistent hashing, bounded load), config validation. Seeded randomness and
fake snapshots; no network."""

from __future__ import annotations

import collections
import random

import pytest

from gateway.config import parse_config
from gateway.config.loader import ConfigError
from gateway.config.vllm import server_root
from gateway.core.tokens import TokenCounter
from gateway.proxy.upstream import BackendClient
from gateway.routing.health import OPEN, HealthRegistry
from gateway.routing.router import Router
from gateway.routing.vllm_load import HashRing, prefix_text
from gateway.vllm.fleet import targets_by_backend
from gateway.vllm.launcher import launch_argv
from gateway.vllm.metrics import LoadSnapshot, MetricsError, parse_metrics, relevant_lines

# Trimmed from a real vLLM 0.32 (CPU) /metrics answer: the families routing reads among
# lookalikes (waiting_by_reason, external_prefix_cache_*, *_created, histograms), two engines.
REAL_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny-llama"} 2.0
vllm:num_requests_running{engine="1",model_name="tiny-llama"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny-llama"} 3.0
vllm:num_requests_waiting{engine="1",model_name="tiny-llama"} 0.0
# HELP vllm:num_requests_waiting_by_reason Number of waiting requests by reason.
# TYPE vllm:num_requests_waiting_by_reason gauge
vllm:num_requests_waiting_by_reason{engine="0",model_name="tiny-llama",reason="capacity"} 3.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="tiny-llama"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="tiny-llama"} 0.0
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="tiny-llama"} 604.0
# HELP vllm:prefix_cache_queries_created Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_created gauge
vllm:prefix_cache_queries_created{engine="0",model_name="tiny-llama"} 1.7959536513274558e+09
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="tiny-llama"} 256.0
# HELP vllm:external_prefix_cache_hits_total External prefix cache hits.
# TYPE vllm:external_prefix_cache_hits_total counter
vllm:external_prefix_cache_hits_total{engine="0",model_name="tiny-llama"} 99.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="tiny-llama"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="tiny-llama"} 2.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="tiny-llama"} 2.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="tiny-llama"} 0.1
"""


# -- metrics ------------------------------------------------------------------------------


def test_parse_real_metrics_sums_engines_and_ignores_lookalikes():
    snap = parse_metrics(REAL_METRICS, t=10.0, inflight=2)
    assert (snap.running, snap.waiting, snap.kv_cache) == (3.0, 3.0, 0.25)
    assert (snap.prefix_hits, snap.prefix_queries) == (256.0, 604.0)
    assert snap.prefix_hit_rate is None and snap.inflight_at_scrape == 2 and snap.t == 10.0
    kept = relevant_lines(REAL_METRICS)
    assert "waiting_by_reason" not in kept and "external" not in kept and "time_to_first" not in kept


def test_prefix_hit_rate_between_scrapes():
    first = parse_metrics(REAL_METRICS, t=1.0)
    later = REAL_METRICS.replace("} 604.0", "} 1004.0").replace("} 256.0", "} 556.0")
    assert parse_metrics(later, t=2.0, previous=first).prefix_hit_rate == pytest.approx(0.75)
    assert parse_metrics(REAL_METRICS, t=3.0, previous=first).prefix_hit_rate is None  # no new queries


def test_older_vllm_metric_names():
    text = ('vllm:num_requests_running{model_name="m"} 1\nvllm:num_requests_waiting{model_name="m"} 2\n'
            'vllm:gpu_cache_usage_perc{model_name="m"} 0.5\n'
            'vllm:gpu_prefix_cache_hits_total{model_name="m"} 5\n'
            'vllm:gpu_prefix_cache_queries_total{model_name="m"} 10\n')
    snap = parse_metrics(text, 0.0)
    assert (snap.running, snap.waiting, snap.kv_cache, snap.prefix_hits, snap.prefix_queries) == (1, 2, 0.5, 5, 10)


@pytest.mark.parametrize("text", ['{"ok": true}', "", "# just a comment\nother_metric 1\n"])
def test_not_vllm_metrics_is_an_error(text):
    with pytest.raises(ValueError):
        parse_metrics(text, 0.0)
    assert issubclass(MetricsError, ValueError)


# -- the vllm-load strategy ----------------------------------------------------------------

FLEET = """
backends:
  a: {type: vllm, base_url: "http://127.0.0.1:1/v1"}
  b: {type: vllm, base_url: "http://127.0.0.1:2/v1"}
  c: {type: vllm, base_url: "http://127.0.0.1:3/v1"}
  hosted: {type: mock}
"""


def fleet_router(models: str, routing: str = "", seed: int = 3, clock=None):
    cfg = parse_config(FLEET + models + routing).config
    clients = {name: BackendClient(name, b, None) for name, b in cfg.backends.items()}
    clock_box = clock or [100.0]
    health = HealthRegistry(lambda: clock_box[0])
    counter = TokenCounter()
    router = Router(cfg, clients, health, lambda body: counter.count_prompt("chat/completions", body, "gpt-4"),
                    random.Random(seed))
    return router, health, clock_box


TWO = """
models:
  m:
    strategy: vllm-load
    targets: [{backend: a}, {backend: b}]
"""


def snap(t=100.0, running=0, waiting=0, kv=0.0, inflight=0) -> LoadSnapshot:
    return LoadSnapshot(t, float(running), float(waiting), kv, inflight_at_scrape=inflight)


def first(router, body=None) -> str:
    return router.plan("m", body or {"messages": [{"role": "user", "content": "hi"}]}, True, {}).ordered[0].client.name


def test_lowest_score_wins_and_provenance_carries_the_snapshot():
    router, health, _ = fleet_router(TWO)
    health.loads["a"] = snap(running=2, waiting=3, kv=0.5)  # 3 + 0.5 + 1 = 4.5
    health.loads["b"] = snap(running=1, waiting=0, kv=0.1)  # 0.25 + 0.2 = 0.45
    plan = router.plan("m", {"messages": []}, False, {})
    assert [c.client.name for c in plan.ordered] == ["b", "a"]
    prov = {p["target"]: p for p in plan.provenance()}
    assert prov["a/m"]["score"] == 4.5 and prov["b/m"]["score"] == 0.45
    assert prov["a/m"]["load"] == {"waiting": 3.0, "running": 2.0, "kv_cache": 0.5, "inflight": 0, "age_ms": 0}
    assert plan.strategy == "vllm-load"


def test_weights_are_configurable():
    router, health, _ = fleet_router(TWO, "routing: {vllm_load: {weights: {waiting: 0, running: 1, kv_cache: 0}}}\n")
    health.loads["a"] = snap(running=1, waiting=9)
    health.loads["b"] = snap(running=3, waiting=0)
    assert first(router) == "a"  # waiting no longer counts


def test_inflight_since_the_snapshot_spreads_a_burst():
    router, health, _ = fleet_router(TWO)
    health.loads["a"] = snap(running=0)
    health.loads["b"] = snap(running=1)  # slightly busier: 0.25
    picks = []
    for _ in range(10):  # a burst between two scrapes: each pick stays in flight
        plan = router.plan("m", {"messages": []}, True, {})
        plan.ordered[0].state.inflight += 1
        picks.append(plan.ordered[0].client.name)
    assert picks[0] == "a"
    assert collections.Counter(picks) == {"a": 5, "b": 5}
    # In flight at scrape time is already in the server's counts: not counted twice.
    health.loads["a"] = snap(running=5, inflight=5)
    health.loads["b"] = snap(running=5, inflight=5)
    plan = router.plan("m", {"messages": []}, True, {})
    assert {p["target"]: p["load"]["inflight"] for p in plan.provenance()} == {"a/m": 0, "b/m": 0}


def test_stale_or_missing_snapshots_fall_back_to_inflight():
    router, health, clock = fleet_router(TWO)
    health.loads["a"] = snap(t=100.0, waiting=10)
    clock[0] = 106.0  # default stale_after_ms 5000
    plan = router.plan("m", {"messages": []}, False, {})
    assert {p["target"]: p["load"] for p in plan.provenance()} == {"a/m": {"inflight": 0}, "b/m": {"inflight": 0}}
    plan.ordered[0].state.inflight = 3
    assert first(router) != plan.ordered[0].client.name


def test_ties_are_broken_at_random_with_the_seeded_rng():
    router, health, _ = fleet_router(TWO, seed=11)
    health.loads["a"] = health.loads["b"] = snap(running=1)
    picks = collections.Counter(first(router) for _ in range(2000))
    assert abs(picks["a"] / 2000 - 0.5) < 0.05
    routers = []
    for _ in range(2):  # the same seed, the same decisions
        r, h, _ = fleet_router(TWO, seed=11)
        h.loads["a"] = h.loads["b"] = snap(running=1)
        routers.append([first(r) for _ in range(50)])
    assert routers[0] == routers[1]


def test_hosted_fallback_behind_the_fleet_by_priority():
    router, health, _ = fleet_router("""
models:
  m:
    strategy: vllm-load
    targets: [{backend: hosted, priority: 1}, {backend: a}, {backend: b}]
""")
    health.loads["a"] = snap(waiting=20)
    health.loads["b"] = snap(waiting=30)
    plan = router.plan("m", {"messages": []}, False, {})
    assert [c.client.name for c in plan.ordered] == ["a", "b", "hosted"]


def test_open_circuit_is_skipped():
    router, health, _ = fleet_router(TWO)
    router.plan("m", {}, False, {})
    health.state("a", "m", router._breaker_settings).breaker.trip(until=1e12)
    plan = router.plan("m", {}, False, {})
    assert [c.client.name for c in plan.ordered] == ["b"]
    assert {p["target"]: p["skipped"] for p in plan.provenance()}["a/m"] == "circuit_open"


# -- prefix affinity ----------------------------------------------------------------------

AFFINITY = "routing: {vllm_load: {prefix_affinity: {enabled: true, prefix_chars: 64}}}\n"
THREE = """
models:
  m:
    strategy: vllm-load
    targets: [{backend: a}, {backend: b}, {backend: c}]
"""


def chat(prefix: str, tail: str = "") -> dict:
    return {"messages": [{"role": "system", "content": prefix}, {"role": "user", "content": tail}]}


def test_same_prefix_sticks_and_different_prefixes_spread():
    router, health, _ = fleet_router(THREE, AFFINITY)
    for name in "abc":
        health.loads[name] = snap(running=1)
    system = "You are a helpful assistant for the ACME kettle company. " * 3
    chosen = {first(router, chat(system, f"question {i}")) for i in range(50)}
    assert len(chosen) == 1  # the shared 64-character prefix decides
    spread = collections.Counter(first(router, chat(f"prompt number {i}: " + "x" * 80)) for i in range(600))
    assert set(spread) == {"a", "b", "c"}
    assert all(120 < n < 280 for n in spread.values()), spread
    plan = router.plan("m", chat(system), True, {})
    assert plan.provenance()[0]["affinity"] == "preferred"


def test_affinity_yields_when_the_preferred_server_is_overloaded():
    router, health, _ = fleet_router(TWO, AFFINITY)
    health.loads["a"] = health.loads["b"] = snap()
    body = chat("a long shared system prompt " * 4)
    preferred = first(router, body)
    other = "b" if preferred == "a" else "a"
    # Within the bound (1.5 × 0 + 2.0): affinity holds even though the other is idler.
    health.loads[preferred] = snap(waiting=1, running=2)  # 1.5
    assert first(router, body) == preferred
    health.loads[preferred] = snap(waiting=3)  # 3.0 > 2.0: overloaded
    plan = router.plan("m", body, True, {})
    assert plan.ordered[0].client.name == other
    assert {p["target"]: p.get("affinity") for p in plan.provenance()}[f"{preferred}/m"] == "overloaded"
    # The bound scales with the least-loaded server: 1.5 × 4 + 2 = 8 ≥ 7.
    health.loads[other] = snap(waiting=4)
    health.loads[preferred] = snap(waiting=7)
    assert first(router, body) == preferred


def test_consistent_hashing_moves_few_prefixes_when_a_server_joins():
    ring2 = HashRing(("a/m", "b/m"), 64)
    ring3 = HashRing(("a/m", "b/m", "c/m"), 64)
    rng = random.Random(5)
    keys = [rng.getrandbits(64) for _ in range(5000)]
    before = [ring2.walk(k)[0] for k in keys]
    after = [ring3.walk(k)[0] for k in keys]
    moved = [(x, y) for x, y in zip(before, after) if x != y]
    assert all(y == "c/m" for _, y in moved)  # only to the new server, never between old ones
    assert 0.2 < len(moved) / len(keys) < 0.45  # about a third
    assert sorted(ring3.walk(keys[0])) == ["a/m", "b/m", "c/m"]


def test_a_server_leaving_moves_only_its_prefixes():
    router, health, _ = fleet_router(THREE, AFFINITY)
    bodies = [chat(f"conversation {i} " + "y" * 70) for i in range(300)]
    before = [first(router, b) for b in bodies]
    health.state("c", "m", router._breaker_settings).breaker.trip(until=1e12)
    after = [first(router, b) for b in bodies]
    assert all(x == y for x, y in zip(before, after) if x != "c")
    assert "c" not in after


def test_prefix_text_shapes():
    assert prefix_text(chat("sys", "user"), 100) == "system\x1fsys\x1euser\x1fuser\x1e"
    assert prefix_text(chat("s" * 500, "user"), 10) == "system\x1fsss"
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]}]}
    assert prefix_text(parts, 100) == "user\x1fhi\x1e"
    assert prefix_text({"prompt": "abcdef"}, 3) == "abc"
    assert prefix_text({"prompt": ["abc", "def"]}, 10) == "abc"
    assert prefix_text({"prompt": [1, 2, 3]}, 10) == "1,2,3"
    assert prefix_text({"input": "embed me"}, 5) == "embed"
    assert prefix_text({}, 10) == ""


def test_affinity_off_or_without_prompt_is_plain_load_order():
    router, health, _ = fleet_router(TWO, AFFINITY)
    health.loads["a"] = snap(waiting=1)
    health.loads["b"] = snap()
    assert all(first(router, {"messages": []}) == "b" for _ in range(20))


# -- config ---------------------------------------------------------------------------------


def test_vllm_config_blocks_validate():
    cfg = parse_config("""
backends:
  v:
    type: vllm
    base_url: http://127.0.0.1:8001/v1
    vllm: {scrape_interval_ms: 250, down_after: 3}
    launch: {model: /models/llama, served_model_name: llama, args: [--max-num-seqs, "8"],
             env: {CUDA_VISIBLE_DEVICES: "1"}, python: /opt/vllm/bin/python}
models:
  m: {strategy: vllm-load, targets: [{backend: v, model: llama}]}
routing: {vllm_load: {prefix_affinity: true, weights: {kv_cache: 4}}}
""").config
    b = cfg.backends["v"]
    assert b.vllm.scrape_interval_ms == 250 and b.launch.env == {"CUDA_VISIBLE_DEVICES": "1"}
    assert cfg.routing.vllm_load.prefix_affinity.enabled and cfg.routing.vllm_load.weights.kv_cache == 4
    assert launch_argv(b, b.launch) == [
        "/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--model", "/models/llama",
        "--host", "127.0.0.1", "--port", "8001", "--served-model-name", "llama", "--max-num-seqs", "8"]
    assert targets_by_backend(cfg) == {"v": ("llama",)}
    assert server_root("http://h:8000/v1/") == "http://h:8000" and server_root("http://h:8000") == "http://h:8000"


@pytest.mark.parametrize("backend,message", [
    ("{type: openai, base_url: 'http://x/v1', launch: {model: m}}", "backends.v.launch: only for type: vllm"),
    ("{type: openai, base_url: 'http://x/v1', vllm: {}}", "backends.v.vllm: only for type: vllm"),
    ("{type: vllm, base_url: 'http://x/v1', launch: {model: m}}", "explicit port"),
    ("{type: vllm, base_url: 'http://x:1/v1', vllm: {scrape_every: 1}}", "scrape_every"),
    ("{type: vllm, base_url: 'http://x:1/v1', launch: {model: m, backoff_initial_s: 5, backoff_max_s: 1}}",
     "backoff_max_s"),
])
def test_vllm_config_errors_name_their_path(backend, message):
    with pytest.raises(ConfigError) as err:
        parse_config(f"backends:\n  v: {backend}\n")
    assert message in str(err.value)


def test_breaker_reset_closes_at_once():
    health = HealthRegistry(lambda: 0.0)
    st = health.state("a", "m", parse_config("{}").config.routing.circuit_breaker)
    st.breaker.trip(until=50.0)
    assert st.breaker.peek() == OPEN
    st.breaker.reset()
    assert st.breaker.allow() and st.breaker.peek() == "closed"
