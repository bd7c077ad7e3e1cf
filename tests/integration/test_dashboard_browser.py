"""The dashboard page in headless Chromium (Debian's ``chromium``), driven over the DevTools
protocol: it signs in with the login form (the cookie flow a browser uses), every panel renders
from real rows with no console error, exception or CSP violation, a request's details open,
and a screenshot is saved.

Skipped when no Chromium is installed (``apt-get install chromium``). The screenshots go to
``build/screenshots/`` (git-ignored); with ``LLM_GATEWAY_UPDATE_SCREENSHOT=1`` the page's is also
written to ``docs/images/dashboard.png`` for the README.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import aiohttp
import httpx
import pytest

from gateway.evals.tables import RunRecord, ScoreRecord, run_row, score_row
from tests.support.dashboard import ADMIN, AUTH, CONFIG, dashboard_gateway, emit, known_rows, make_ctx
from tests.support.drift import drift_rows
from tests.support.fake_upstream import FakeVllm
from tests.support.telemetry import REPO, isolate_telemetry_data, wait_for  # noqa: F401

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")

PANELS = ("p-summary", "p-traffic", "p-latency", "p-ttft", "p-cache", "p-usage-tenant", "p-usage-model",
          "p-backends", "p-slowest", "p-failed", "p-prompts", "p-adapters", "p-drift", "p-bias",
          "p-evaluations")
SHOTS = REPO / "build" / "screenshots"


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self):
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                self.events.append(data)

    async def send(self, method: str, **params) -> dict:
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send_str(json.dumps({"id": self.next_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(fut, 60)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def evaluate(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expression}")

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, CSP and network errors."""
        out = []
        for e in self.events:
            method, p = e["method"], e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:500])
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                out.append(f"console.{p['type']}: " + json.dumps(p.get("args"))[:500])
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                entry = p["entry"]
                out.append(f"log {entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
        return out


async def _browse(url: str, key: str, profile: Path) -> dict:
    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                             "--no-first-run", "--disable-extensions", "--remote-debugging-port=0",
                             f"--user-data-dir={profile}", "--window-size=1440,900", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("Chromium did not start")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            page = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                dt = DevTools(ws)
                for domain in ("Runtime", "Log", "Page"):
                    await dt.send(f"{domain}.enable")
                await dt.send("Emulation.setDeviceMetricsOverride", width=1440, height=900, deviceScaleFactor=1,
                              mobile=False)
                # sign in with the form (the key is never put in a URL), then open the page
                await dt.send("Page.navigate", url=url.split("#")[0])
                await dt.wait_for("document.getElementById('key') !== null")
                await dt.evaluate(f"document.getElementById('key').value = {json.dumps(key)}; "
                                  "document.querySelector('form').submit(); true")
                await dt.wait_for("document.body && document.body.dataset.auth === 'cookie'", timeout=60)
                await dt.send("Page.navigate", url="about:blank")
                await dt.wait_for("location.href === 'about:blank'")
                dt.events.clear()  # the login form's own 401 (and its favicon) are expected
                await dt.send("Page.navigate", url=url)
                await dt.wait_for("location.pathname === '/dashboard' && document.body "
                                  "&& document.body.dataset.ready === '1' "
                                  "&& document.querySelector('section.panel[data-state=loading]') === null", timeout=120)
                out = await dt.evaluate("""(() => {
                    const panels = {};
                    document.querySelectorAll('section.panel').forEach(p => {
                      panels[p.id] = {state: p.dataset.state, msg: p.querySelector('.msg').textContent,
                                      canvases: p.querySelectorAll('canvas').length,
                                      rows: p.querySelectorAll('tbody tr').length};
                    });
                    return {panels, auth: document.body.dataset.auth, tiles: document.querySelectorAll('.tile').length,
                            drift: document.getElementById('drift-level').textContent,
                            hists: document.querySelectorAll('#drift-hists canvas').length,
                            backends: [...document.querySelectorAll('#p-backends tbody tr')]
                                        .map(tr => [...tr.children].map(td => td.textContent)),
                            hash: location.hash, cookieVisible: document.cookie.includes('llm_gateway_dashboard'),
                            title: document.title,
                            filters: [...document.querySelectorAll('#controls select[name=model] option')]
                                       .map(o => o.value)};
                })()""")
                metrics = await dt.send("Page.getLayoutMetrics")
                height = int(metrics["cssContentSize"]["height"]) + 20
                await dt.send("Emulation.setDeviceMetricsOverride", width=1440, height=height, deviceScaleFactor=1,
                              mobile=False)
                await asyncio.sleep(0.5)  # the resize re-lays the charts out
                shot = await dt.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                out["screenshot"] = base64.b64decode(shot["data"])
                # a request's details, from the slowest-requests table
                await dt.send("Emulation.setDeviceMetricsOverride", width=1440, height=900, deviceScaleFactor=1,
                              mobile=False)
                await dt.evaluate("document.querySelector('#p-slowest tbody a').click()")
                await dt.wait_for("document.querySelector('#detail-body .cols') !== null")
                out["detail"] = await dt.evaluate("""({open: document.getElementById('detail').open,
                    text: document.getElementById('detail-body').textContent, hash: location.hash})""")
                shot = await dt.send("Page.captureScreenshot", format="png")
                out["detail_screenshot"] = base64.b64decode(shot["data"])
                # filters re-query every panel
                await dt.evaluate("""(() => { const s = document.querySelector('#controls select[name=model]');
                    s.value = 'shifty'; s.dispatchEvent(new Event('change', {bubbles: true})); })()""")
                await dt.wait_for("document.body.dataset.ready === '1' && location.hash.includes('model=shifty')")
                out["filtered"] = await dt.evaluate("""({
                    model: [...document.querySelectorAll('#p-usage-model tbody tr td:first-child')]
                             .map(t => t.textContent),
                    drift: document.getElementById('drift-level').textContent,
                    scope: document.getElementById('drift-scope').textContent})""")
                out["problems"] = dt.problems()
                dt.reader.cancel()
                return out
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _with_vllm(url: str) -> str:
    """The test config plus a vLLM backend (a fake server whose /metrics the gateway scrapes)."""
    return CONFIG.replace("models:\n", f"""  vl: {{type: vllm, base_url: "{url}", vllm: {{scrape_interval_ms: 50, timeout_ms: 500}}}}
models:
  tiny: {{targets: [{{backend: vl, model: tiny-llama}}]}}
""", 1)


def _eval_run(now: float) -> list:
    """The rows of a finished evaluation run of two candidates on two items."""
    run = RunRecord("eval-1", now - 600, "qa.jsonl", "0" * 64, ["mock-gpt", "support@2"], ["exact"], {}, 2)
    scores = [score_row(ScoreRecord("eval-1", now - 590, c, i, f"q{i}", "exact", float(i), "", "", 10.0, 0.001, ""))
              for c in ("mock-gpt", "support@2") for i in (0, 1)]
    return [run_row(run, "running", None, 1), *scores, run_row(run, "finished", now - 580, 2)]


def test_page_renders_every_panel_in_headless_chromium(tmp_path):
    database = "t_" + uuid.uuid4().hex[:12]
    vllm = FakeVllm("tiny-llama").__enter__()
    vllm.running, vllm.waiting, vllm.kv_cache = 3, 5, 0.42
    srv = dashboard_gateway(database, tmp_path, config=_with_vllm(vllm.url))
    try:
        # live state: a real request to each kind of backend, and a scrape of the vLLM server
        for model in ("tiny", "mock-gpt"):
            r = httpx.post(f"{srv.url}/v1/chat/completions", json={"model": model, "messages": [
                {"role": "user", "content": "hi"}]}, timeout=30)
            assert r.status_code == 200, r.text
        wait_for(lambda: (httpx.get(f"{srv.url}/admin/vllm", headers=AUTH).json()["backends"][0].get("snapshot")
                          or {}).get("waiting") == 5, what="a scrape of the fake vLLM server")
        now = time.time()
        rows, feedback = known_rows(now)
        steady, steady_fb = drift_rows(now, "steady", drifted=False, seed=21)
        shifty, shifty_fb = drift_rows(now, "shifty", drifted=True, seed=22, prompt_id="triage")
        adapted = make_ctx(now, minutes_ago=15, model="tiny", backend="vl", rid="lora-1")
        adapted.adapter, adapted.adapter_version = "tiny-ft", 2  # a LoRA adapter answered: its panel has rows
        emit(srv, rows + steady + shifty + [adapted], feedback + steady_fb + shifty_fb + _eval_run(now))
        out = asyncio.run(_browse(f"{srv.url}/dashboard#range=24h", ADMIN, tmp_path / "profile"))
    finally:
        srv.__exit__(None, None, None)
        vllm.__exit__(None, None, None)
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "dashboard.png").write_bytes(out["screenshot"])
    (SHOTS / "dashboard-request.png").write_bytes(out["detail_screenshot"])
    if os.environ.get("LLM_GATEWAY_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs" / "images").mkdir(parents=True, exist_ok=True)
        (REPO / "docs" / "images" / "dashboard.png").write_bytes(out["screenshot"])

    assert out["problems"] == [], out["problems"]
    assert out["auth"] == "cookie" and not out["cookieVisible"]  # signed in by the form, the cookie is HttpOnly
    assert "key=" not in out["hash"] and "range=24h" in out["hash"]
    panels = out["panels"]
    assert set(panels) == set(PANELS)
    assert {p: v["state"] for p, v in panels.items()} == {p: "ok" for p in PANELS}, panels
    for chart in ("p-traffic", "p-latency", "p-ttft", "p-cache"):
        assert panels[chart]["canvases"] >= 1, chart
    for tbl, least in (("p-usage-tenant", 2), ("p-usage-model", 3), ("p-backends", 2), ("p-slowest", 10),
                       ("p-failed", 2), ("p-prompts", 3), ("p-adapters", 1), ("p-drift", 6), ("p-bias", 2 + 5),
                       ("p-evaluations", 2)):
        assert panels[tbl]["rows"] >= least, (tbl, panels[tbl])
    assert out["tiles"] >= 12 and out["drift"] == "DRIFT" and out["hists"] == 3
    backends = {row[0]: row for row in out["backends"]}
    assert set(backends) == {"mock", "openai", "vl"}
    assert backends["vl"][1] == "vllm" and "tiny-llama: closed" in backends["vl"][2] and "metrics up" in backends["vl"][2]
    assert backends["vl"][5] == "3 / 5" and backends["vl"][6] == "42.0%"  # vLLM running / waiting, KV cache
    # openai has rows but no live state since the gateway started: never "no traffic"
    assert "closed" in backends["mock"][2] and backends["openai"][2] == "idle since start"
    assert {"steady", "shifty", "mock-gpt", "gpt-4o"} <= set(out["filters"])
    assert out["detail"]["open"] and "latency_ms" in out["detail"]["text"] and "req=" in out["detail"]["hash"]
    assert out["filtered"]["model"] == ["shifty"] and out["filtered"]["drift"] == "DRIFT"
    assert "model=shifty" in out["filtered"]["scope"]
    assert out["screenshot"][:8] == b"\x89PNG\r\n\x1a\n" and len(out["screenshot"]) > 50_000
