#!/usr/bin/env bash
# Packaging check: build the wheel, check that chDB and what it pulls in (numpy, pandas,
# pyarrow) come only with the `embedded` extra, install it with that extra (not editable) into a
# fresh virtualenv outside the checkout, and run the commands a new user runs first from an
# empty folder (`llm-gateway store` serving the embedded store included), with no
# network for the gateway itself (proxies point at a closed port), no TIKTOKEN_CACHE_DIR and an
# empty HOME. A missing dependency, a file the wheel lacks or a command that needs the
# repository fails here. Installing the dependencies needs the package index (PyPI).
#
# Usage: tests/packaging/check_wheel.sh [PYTHON]      (KEEP=1 keeps the work folder)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
python=${1:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/llm-gateway-wheel.XXXXXX")
server_pid=
store_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$store_pid" ] && kill "$store_pid" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "work folder kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
started=$SECONDS
step() { echo "== $* ($((SECONDS - started)) s)"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

step "wheel from a copy of the checkout's files"
# (the build writes build/ and *.egg-info next to the sources: not into the checkout)
mkdir "$work/src"
if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard \
     | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
     | tar --null -T - -cf -) | tar -xf - -C "$work/src"
else
  (cd "$repo" && tar --exclude=.git --exclude=build --exclude='*.egg-info' --exclude=__pycache__ -cf - .) \
    | tar -xf - -C "$work/src"
fi
"$python" -m pip wheel -q --no-deps --wheel-dir "$work/dist" "$work/src"
wheel=$(ls "$work"/dist/llm_gateway-*.whl)
echo "$(basename "$wheel"): $(( $(wc -c <"$wheel") / 1024 )) KiB"
"$python" - "$wheel" <<'EOF' || fail "the wheel lacks package data"
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["gateway/encodings/o200k_base.tiktoken", "gateway/encodings/cl100k_base.tiktoken",
        "gateway/telemetry/saved_queries/latency-by-model.sql", "gateway/telemetry/saved_queries/session-tree.sql",
        "gateway/dashboard/static/dashboard.js", "loadtest/scenarios/chat-json.yaml"]
missing = [n for n in need if n not in names]
sys.exit(f"missing: {missing}" if missing else 0)
EOF
"$python" - "$wheel" <<'EOF' || fail "chDB (numpy, pandas, pyarrow) must come only with the embedded extra"
import re, sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
meta = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
requires = re.findall(r"^Requires-Dist: (.+)$", meta, re.M)
heavy = re.compile(r"^(chdb|chdb-core|numpy|pandas|pyarrow)\b", re.I)
core = [r for r in requires if "extra ==" not in r and heavy.match(r)]
embedded = [r for r in requires if r.startswith("chdb-core") and 'extra == "embedded"' in r]
sys.exit(f"core requires {core}" if core else 0 if embedded else "no chdb-core in the embedded extra")
EOF

step "fresh virtualenv, install of the wheel with the embedded store (as the quickstart)"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel[embedded]"

# From here on: the venv's commands only, nothing from the checkout or the caller's settings.
mkdir "$work/run" "$work/home" "$work/tiktoken-cache"
cd "$work/run"
for name in $(env | sed -n 's/^\(LLM_GATEWAY_[A-Z_]*\|GATEWAY_ADMIN_KEY\)=.*/\1/p'); do unset "$name"; done
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV DATA_GYM_CACHE_DIR no_proxy NO_PROXY
export PATH="$work/venv/bin:$PATH" HOME="$work/home" TIKTOKEN_CACHE_DIR="$work/tiktoken-cache"
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 ALL_PROXY=http://127.0.0.1:9
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY all_proxy=$ALL_PROXY NO_PROXY=127.0.0.1,localhost
[ "$(command -v llm-gateway)" = "$work/venv/bin/llm-gateway" ] || fail "llm-gateway is not the venv's"

# run NAME WANT CMD...: run CMD, logs in $work/logs/NAME.{out,err}; WANT is the exit status
# expected; a traceback is always a failure.
mkdir "$work/logs"
run() {
  local name=$1 want=$2 rc=0; shift 2
  step "$name: $*"
  "$@" >"$work/logs/$name.out" 2>"$work/logs/$name.err" || rc=$?
  local ok=1
  [ "$rc" = "$want" ] || ok=0
  grep -q "^Traceback" "$work/logs/$name.err" && ok=0
  if [ $ok = 0 ]; then
    tail -n 40 "$work/logs/$name.out" "$work/logs/$name.err" >&2
    fail "$name exited $rc (expected $want)"
  fi
  [ "$want" = 0 ] || echo "   exit status $rc: $(tail -n 1 "$work/logs/$name.out" "$work/logs/$name.err" | grep -v '^==>' | grep . | tail -n 1)"
}
expect() {  # expect NAME PATTERN: the command's stdout contains PATTERN (a grep -E regex)
  grep -Eq -- "$2" "$work/logs/$1.out" || { cat "$work/logs/$1.out" >&2; fail "$1: no '$2' in its output"; }
}

run version 0 llm-gateway --version
expect version "^llm-gateway, version [0-9]"

run tokens 0 python -c 'from gateway.core.tokens import TokenCounter
c = TokenCounter(load_timeout_s=120)
text = "Tokenizers split 1234567 numbers, don'"'"'t they?\n\n  H\u00e9llo w\u00f6rld \u4e16\u754c"
print(c.count_text(text, "gpt-4o"), c.count_text(text, "gpt-4"))'
expect tokens "^19 24$"
[ -z "$(ls -A "$work/tiktoken-cache")" ] || fail "tiktoken wrote to its cache: the packaged encodings were not used"

run demo 0 llm-gateway demo
expect demo "demo finished"
expect demo "mock-gpt"
grep -q "query failed" "$work/logs/demo.out" && fail "the demo's saved query failed"

# A served gateway with body logging, one request in a session, then a clean stop (rows flushed).
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir cfg
cat > cfg/gateway.yaml <<EOF
server: {port: $port}
backends:
  mock: {type: mock}
models:
  wheel-chat: {targets: [{backend: mock}]}
telemetry:
  bodies: {request: true, response: true}
EOF
run check-config 0 llm-gateway check-config cfg/gateway.yaml
step "serve on port $port"
llm-gateway serve --config cfg/gateway.yaml >"$work/logs/serve.out" 2>&1 &
server_pid=$!
run client 0 python - "$port" <<'EOF'
import sys, time, urllib.request
import openai
base = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.monotonic() + 120
while True:
    try:
        if urllib.request.urlopen(f"{base}/readyz", timeout=2).status == 200:
            break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
client = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-wheel", max_retries=0)
reply = client.chat.completions.create(model="wheel-chat", messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"x-gateway-session-id": "wheel-check"})
assert reply.choices[0].message.content
page = urllib.request.urlopen(f"{base}/dashboard", timeout=30).read().decode()
assert "uPlot" in page, "the dashboard page lacks its scripts"
print("ok")
EOF
kill -TERM "$server_pid"
rc=0; wait "$server_pid" || rc=$?
server_pid=
[ "$rc" = 0 ] || { tail -n 40 "$work/logs/serve.out" >&2; fail "serve exited $rc after SIGTERM"; }

# The commands read the server's config: its port no longer answers, so they open the embedded
# store themselves, as on a machine where no gateway runs.
run query-list 0 llm-gateway query --list
expect query-list "latency-by-model"
expect query-list "session-tree"
run query-saved 0 llm-gateway query --saved latency-by-model --config cfg/gateway.yaml
expect query-saved "mock-gpt"
run sessions 0 llm-gateway sessions show wheel-check --config cfg/gateway.yaml
expect sessions "session wheel-check: 1 request"
run dataset 0 llm-gateway dataset export --model wheel-chat --config cfg/gateway.yaml
expect dataset '"role": ?"assistant"'
# Too few rows for drift statistics: "insufficient data" (exit status 3).
run drift 3 llm-gateway drift --config cfg/gateway.yaml
grep -q "insufficient data" "$work/logs/drift.out" "$work/logs/drift.err" || fail "drift does not say insufficient data"
# One segment (every row is tenant ''): nothing to compare for bias either (exit status 3); its
# saved queries come from the wheel.
run bias 3 llm-gateway bias --config cfg/gateway.yaml
grep -q "insufficient data" "$work/logs/bias.out" "$work/logs/bias.err" || fail "bias does not say insufficient data"
# The embedded store served alone: a reader over ClickHouse's HTTP interface finds it through
# .llm-gateway/store.json and sees the row serve logged; SIGTERM removes the file.
step "llm-gateway store"
llm-gateway store --config cfg/gateway.yaml >"$work/logs/store.out" 2>&1 &
store_pid=$!
run store-read 0 python - <<'EOF'
import json, pathlib, time
import clickhouse_connect
found = pathlib.Path(".llm-gateway/store.json")
deadline = time.monotonic() + 120
while not found.exists():
    assert time.monotonic() < deadline, "the store did not write store.json"
    time.sleep(0.2)
url = json.loads(found.read_text())["url"]
client = clickhouse_connect.get_client(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
rows = client.query("SELECT count() FROM llm_requests WHERE model_requested = 'wheel-chat'").result_rows
assert rows == [(1,)], rows
print("ok")
EOF
kill -TERM "$store_pid"
rc=0; wait "$store_pid" || rc=$?
store_pid=
[ "$rc" = 0 ] || { tail -n 40 "$work/logs/store.out" >&2; fail "store exited $rc after SIGTERM"; }
[ ! -e .llm-gateway/store.json ] || fail "store.json outlived the store"
run bench-extra 2 llm-gateway-bench run --url "http://127.0.0.1:$port/v1"
grep -q "llm-gateway\[bench\]" "$work/logs/bench-extra.err" || fail "llm-gateway-bench does not name its extra"

step "all commands ran from the installed wheel"
