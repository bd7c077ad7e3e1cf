"""The embedded store as a local server (``gateway.store``): chDB behind ClickHouse's HTTP
interface, read with clickhouse-connect's HTTP client; in-process inserts with deduplication;
the discovery file; ``llm-gateway store`` as a real process; and a serving process that reads
the embedded store without loading chDB, numpy, pandas or pyarrow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import clickhouse_connect
import httpx
import orjson
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from gateway.config.telemetry import ClickHouseSettings, QuerySettings
from gateway.store.discovery import StoreLocator, StoreNotRunning, discovery_path, read_discovery, write_discovery
from gateway.store.embedded import StoreServer
from gateway.telemetry.clickhouse import ReadOnlyClient
from tests.support.telemetry import CHDB_DIR, REPO, chdb_client, gateway_env, isolate_telemetry_data, tdb, wait_for  # noqa: F401

HEAVY = "SELECT sleepEachRow(1) FROM numbers(3)"  # 3 s: one row a block


@pytest.fixture
def store(tmp_path, tdb):
    """A read-only StoreServer on the session's chDB directory, its telemetry in database ``tdb``,
    with a small table ``t`` (created in-process: the HTTP port takes no DDL)."""
    with StoreServer(tmp_path / "data", settings=ClickHouseSettings(database=tdb), chdb_dir=CHDB_DIR) as server:
        client = chdb_client()
        try:
            client.command(f"CREATE TABLE `{tdb}`.t (id UInt32, name String) ENGINE = MergeTree ORDER BY id "
                           "SETTINGS non_replicated_deduplication_window = 100")
        finally:
            client.close()
        yield server


def http_client(server: StoreServer, **kw):
    return clickhouse_connect.get_client(host="127.0.0.1", port=server.http.port, autogenerate_session_id=False, **kw)


def test_inserts_are_deduplicated_and_reads_speak_the_http_interface(store, tdb):
    store.insert("t", ["id", "name"], b'[1,"one"]\n[2,"two"]\n', token="batch-1")
    store.insert("t", ["id", "name"], b'[1,"one"]\n[2,"two"]\n', token="batch-1")  # a retried batch lands once
    store.insert("t", ["id", "name"], b'[3,"three"]\n', token="batch-2")
    assert "llm_requests" in {r[0] for r in http_client(store).query(f"SHOW TABLES FROM `{tdb}`").result_rows}
    client = http_client(store, database=tdb, compress="lz4")
    try:
        assert client.query("SELECT count(), sum(id) FROM t").result_rows == [(3, 6)]
        rows = client.query("SELECT id, name FROM t WHERE id >= {lo:UInt32} ORDER BY id", parameters={"lo": 2})
        assert rows.result_rows == [(2, "two"), (3, "three")]
        csv = client.raw_query("SELECT id, name FROM t ORDER BY id", fmt="CSVWithNames")
        assert csv == b'"id","name"\n1,"one"\n2,"two"\n3,"three"\n'
        ndjson = client.raw_query("SELECT id FROM t WHERE name = {n:String}", parameters={"n": "two"},
                                  fmt="JSONEachRow")
        assert orjson.loads(ndjson) == {"id": 2}
    finally:
        client.close()
    answer = httpx.get(store.url, params={"query": f"SELECT count() AS n FROM `{tdb}`.t FORMAT JSONEachRow"})
    assert answer.json() == {"n": 3} and answer.headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert int(orjson.loads(answer.headers["X-ClickHouse-Summary"])["read_rows"]) >= 1
    assert httpx.get(f"{store.url}/ping").text == "Ok.\n"


def test_readers_cannot_write_drop_or_reach_files(store, tdb):
    client = http_client(store, database=tdb)
    try:
        for sql, code in ((f"DROP TABLE `{tdb}`.t", 164), ("INSERT INTO t VALUES (9, 'x')", 164),
                          ("CREATE TABLE x (a UInt8) ENGINE = Memory", 164),
                          ("SELECT * FROM file('/etc/hostname', 'LineAsString')", 164),
                          ("SELECT 1 INTO /* hidden */ OUTFILE '/tmp/llm-gateway-store-outfile'", 358)):
            with pytest.raises(DatabaseError) as err:
                client.command(sql)
            assert f"Code: {code}." in str(err.value), sql
    finally:
        client.close()
    # the same refusals for a client that sends readonly itself, and for data sent over HTTP
    insert = httpx.post(store.url, params={"query": f"INSERT INTO `{tdb}`.t FORMAT JSONEachRow"},
                        content=b'{"id": 9, "name": "x"}\n')
    assert insert.status_code == 403 and insert.headers["X-ClickHouse-Exception-Code"] == "164"
    assert not os.path.exists("/tmp/llm-gateway-store-outfile")
    direct = chdb_client(tdb)
    try:
        assert direct.query("SELECT count() FROM t").result_rows == [(0,)]
    finally:
        direct.close()


def test_the_gateways_reader_runs_with_its_limits_and_cannot_lift_them(store, tdb):
    limits = QuerySettings(max_result_rows=5, result_overflow_mode="break")
    reader = ReadOnlyClient(ClickHouseSettings(database=tdb), f"chdb://{CHDB_DIR}", limits,
                            locate=StoreLocator(store.data_dir).url)
    try:
        assert reader.query("SELECT getSetting('readonly') AS r, getSetting('max_result_rows') AS m",
                            "JSONEachRow") == b'{"r":1,"m":5}\n'
        with pytest.raises(DatabaseError) as err:
            reader.query("SELECT 1 SETTINGS max_result_rows = 0", "TabSeparated")
        assert "Code: 164." in str(err.value)
    finally:
        reader.close()


def test_parameters_too_long_for_a_url_arrive_as_form_fields(store, tdb):
    # clickhouse-connect moves the statement and its parameters into a multipart form once they
    # pass 4 KiB: a semantic-cache look-up's 384-number embedding already does.
    vector = [round(0.001 * i - 0.2, 6) + 1e-7 for i in range(384)]
    reader = ReadOnlyClient(ClickHouseSettings(database=tdb), f"chdb://{CHDB_DIR}", locate=StoreLocator(store.data_dir).url)
    try:
        answer = reader.query("SELECT length({v:Array(Float32)}) AS n, {who:String} AS who, getSetting('readonly') AS r",
                              "JSONEachRow", {"v": vector, "who": "form"})
        assert orjson.loads(answer) == {"n": 384, "who": "form", "r": 1}
    finally:
        reader.close()
    external = httpx.post(store.url, files={"query": (None, "SELECT 1"), "data": ("t.csv", b"1\n")})
    assert external.status_code == 400 and "External data" in external.text


def test_a_heavy_query_does_not_hold_up_other_readers(store):
    done = threading.Event()

    def heavy() -> None:
        client = http_client(store)
        try:
            client.raw_query(HEAVY, settings={"max_block_size": 1})
        finally:
            client.close()
            done.set()

    worker = threading.Thread(target=heavy)
    worker.start()
    wait_for(lambda: b"sleepEachRow" in httpx.post(store.url, content=b"SELECT query FROM system.processes").content,
             what="the heavy query to run")
    for _ in range(5):
        assert httpx.post(store.url, content=b"SELECT 1").text == "1\n"
        assert httpx.get(f"{store.url}/ping").status_code == 200
    assert not done.is_set()  # all answered while the heavy query still ran
    worker.join(30)


def test_discovery_file_names_a_live_store_only(store, tmp_path):
    found = json.loads(discovery_path(store.data_dir).read_text())
    assert found == {"url": store.url, "pid": os.getpid()}
    assert StoreLocator(store.data_dir).url() == store.url
    assert StoreLocator(tmp_path / "elsewhere", url="http://127.0.0.1:1").url() == "http://127.0.0.1:1"
    # a store that was killed: its file names a dead process
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "stale"
    write_discovery(stale, "http://127.0.0.1:1")
    discovery_path(stale).write_text(json.dumps({"url": "http://127.0.0.1:1", "pid": int(dead.stdout)}))
    assert read_discovery(stale) is None
    with pytest.raises(StoreNotRunning, match="not running"):
        StoreLocator(stale).url()


def test_discovery_file_goes_with_the_store(tmp_path, tdb):
    server = StoreServer(tmp_path / "d", settings=ClickHouseSettings(database=tdb), chdb_dir=CHDB_DIR).start()
    assert read_discovery(tmp_path / "d")["url"] == server.url
    server.stop()
    assert not discovery_path(tmp_path / "d").exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/ping")


def _spawn_store(data_dir, log_path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gateway", "store", "--data-dir", str(data_dir), *args],
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, env=gateway_env(),
                            cwd=str(data_dir.parent))


def _wait_store(proc: subprocess.Popen, data_dir, log_path) -> str:
    def ready():
        assert proc.poll() is None, log_path.read_text()
        return read_discovery(data_dir)
    return wait_for(ready, timeout=120, what="the store process to serve")["url"]


def test_store_command_serves_until_sigterm_and_refuses_a_second_owner(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    log = tmp_path / "store.log"
    proc = _spawn_store(data, log)
    try:
        url = _wait_store(proc, data, log)
        reader = ReadOnlyClient(ClickHouseSettings(), f"chdb://{data / 'clickhouse'}",
                                locate=StoreLocator(data).url)
        try:
            assert reader.query("SELECT count() FROM llm_requests", "TabSeparated") == b"0\n"  # migrated
            with pytest.raises(DatabaseError, match="Code: 164"):
                reader.query("DROP TABLE llm_requests", "TabSeparated")
        finally:
            reader.close()
        second = subprocess.run([sys.executable, "-m", "gateway", "store", "--data-dir", str(data)],
                                capture_output=True, text=True, timeout=120, env=gateway_env())
        assert second.returncode == 2 and "held by another process" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        assert read_discovery(data)["url"] == url  # the second one left the first one's file alone
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not discovery_path(data).exists()
    assert "store: stopped" in log.read_text()


_SERVING = """
import sys, httpx, openai
sys.path.insert(0, {repo!r})
from tests.support.gateway import serve
config = '''
server: {{admin_key: adm}}
backends: {{mock: {{type: mock, mock: {{ttft_ms: 0, tokens: 3}}}}}}
models: {{mock-gpt: {{targets: [{{backend: mock}}]}}}}
telemetry: {{enabled: {enabled}}}
'''
with serve(config, ingest="process") as srv:  # a serving process as `serve` runs it
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="sk-x", max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model="mock-gpt", messages=[{{"role": "user", "content": "hi"}}])
    auth = {{"Authorization": "Bearer adm"}}
    answer = httpx.post(srv.url + "/admin/query", headers=auth, timeout=60,
                        json={{"sql": "SELECT count() AS n FROM system.one", "format": "jsonl"}})
    assert answer.status_code == 200 and answer.json() == {{"n": 1}}, answer.text
    panel = httpx.get(srv.url + "/admin/dashboard/summary", headers=auth, timeout=60)
    assert panel.status_code == 200, panel.text
print(sorted(m for m in ("chdb", "numpy", "pandas", "pyarrow") if m in sys.modules))
"""


def _serving_process_modules(tmp_path, enabled: bool) -> list[str]:
    data = tmp_path / "data"
    data.mkdir()
    log = tmp_path / "store.log"
    proc = _spawn_store(data, log)
    try:
        _wait_store(proc, data, log)
        out = subprocess.run([sys.executable, "-c", _SERVING.format(repo=str(REPO), enabled=str(enabled).lower())],
                             capture_output=True, text=True, timeout=180,
                             env=gateway_env(LLM_GATEWAY_DATA_DIR=str(data)))
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_the_serving_process_reads_the_embedded_store_without_chdb(tmp_path):
    """Reads (ops queries, the dashboard) go over HTTP to the store's process."""
    assert _serving_process_modules(tmp_path, enabled=False) == []


def test_the_serving_process_never_loads_chdb_numpy_pandas_or_pyarrow(tmp_path):
    """With telemetry on it only appends records to the request log (the ingester builds rows)."""
    assert _serving_process_modules(tmp_path, enabled=True) == []


def test_a_writable_interface_still_treats_get_as_read_only(tdb):
    """As on a ClickHouse server: GET implies readonly=2, POST may write."""
    from gateway.store.http_interface import ClickHouseHTTPInterface

    with ClickHouseHTTPInterface(CHDB_DIR) as ch:
        create = f"CREATE DATABASE IF NOT EXISTS `{tdb}`"
        refused = httpx.get(ch.url, params={"query": create})
        assert refused.status_code == 403 and refused.headers["X-ClickHouse-Exception-Code"] == "164"
        assert httpx.post(ch.url, params={"query": create}).status_code == 200
        assert httpx.get(ch.url, params={"query": f"EXISTS DATABASE `{tdb}`"}).text == "1\n"
        for level in ("1", "2"):  # and a client's own readonly is honoured
            drop = httpx.post(ch.url, params={"query": f"DROP DATABASE `{tdb}`", "readonly": level})
            assert drop.status_code == 403 and drop.headers["X-ClickHouse-Exception-Code"] == "164"
        assert httpx.post(ch.url, params={"query": f"DROP DATABASE `{tdb}`"}).status_code == 200


_NO_CHDB = "import sys; sys.modules['chdb'] = None  # as if the embedded extra were not installed\n"
_SERVE_WITHOUT_CHDB = _NO_CHDB + """
import openai
from gateway.store.availability import embedded_available
from tests.support.gateway import serve
assert not embedded_available()
config = "backends: {mock: {type: mock}}\\nmodels: {mock-gpt: {targets: [{backend: mock}]}}\\n"
with serve(config, ingest="process") as srv:  # a serving process as `serve` runs it
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="sk-x", max_retries=0)
    print(client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}]).id)
"""


def test_without_chdb_the_gateway_serves_and_commands_say_how_to_get_it(tmp_path):
    env = gateway_env(LLM_GATEWAY_DATA_DIR=str(tmp_path / "data"))
    served = subprocess.run([sys.executable, "-c", _SERVE_WITHOUT_CHDB], capture_output=True, text=True,
                            timeout=120, env=env, cwd=str(tmp_path))
    assert served.returncode == 0 and served.stdout.strip(), served.stderr[-3000:]
    hint = "install llm-gateway[embedded] or set telemetry.clickhouse.dsn to make them queryable"
    for args in (["store"], ["query", "--dsn", f"chdb://{tmp_path / 'data' / 'clickhouse'}", "SELECT 1"]):
        out = subprocess.run([sys.executable, "-c", _NO_CHDB + "from gateway.cli import main; main()", *args],
                             capture_output=True, text=True, timeout=120, env=env, cwd=str(tmp_path))
        assert out.returncode != 0 and hint in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
