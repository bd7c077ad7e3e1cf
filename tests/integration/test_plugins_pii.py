"""PII redaction: the matcher (e-mails, phones, Luhn-checked cards), and through the gateway:
redacted before the request goes upstream and in the logged rows (request and response bodies,
via the ``telemetry.bodies.redact`` hook) in embedded chDB."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from plugins.pii import Redactor, luhn_ok, redact_for_log, redact_text
from tests.support.gateway import gateway_config
from tests.support.telemetry import chdb_client, chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml, wait_for  # noqa: F401

PII_TEXT = ("Reach Jane at jane.doe+work@example.co.uk or +44 20 7946 0958, Bob on (555) 123-4567, "
            "card 4111 1111 1111 1111 / 5500-0000-0000-0004.")


@pytest.mark.parametrize("text,expected", [
    ("mail jane.doe@example.com now", "mail [EMAIL] now"),
    ("a.b-c_d@sub.example.org,", "[EMAIL],"),
    ("call +1-555-123-4567", "call [PHONE]"),
    ("call +44 20 7946 0958.", "call [PHONE]."),
    ("call (555) 123-4567 or 555.123.4567 or 555-123-4567", "call [PHONE] or [PHONE] or [PHONE]"),
    ("pay 4111111111111111", "pay [CARD]"),
    ("pay 4111 1111 1111 1111!", "pay [CARD]!"),
    ("amex 3782-822463-10005", "amex [CARD]"),
    ("order 1234 5678 9012 3456", "order 1234 5678 9012 3456"),  # fails Luhn: not a card
    ("on 2024-01-15 at 10:30", "on 2024-01-15 at 10:30"),  # dates stay
    ("version 1.2.3, id 5551234567, 42", "version 1.2.3, id 5551234567, 42"),  # bare digit runs stay
    ("user@localhost", "user@localhost"),  # no TLD
])
def test_redactor(text, expected):
    assert redact_text(text) == expected


def test_luhn_and_settings():
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713") and not luhn_ok("4111111111111112")
    r = Redactor(phones=False, replacement="<{kind}>")
    assert r.redact("x@y.io +1-555-123-4567 4111111111111111") == "<EMAIL> +1-555-123-4567 <CARD>"


def test_log_hook_keeps_json_valid():
    body = orjson.dumps({"messages": [{"role": "user", "content": "hi\njane@x.io"}], "n": 4111111111111111})
    out = redact_for_log("request", body.decode())
    assert orjson.loads(out) == {"messages": [{"role": "user", "content": "hi\n[EMAIL]"}], "n": 4111111111111111}
    assert redact_for_log("response", "plain jane@x.io") == "plain [EMAIL]"


def test_pii_redacted_upstream_and_in_rows(upstream, make_gateway, tmp_path, tdb):
    tel = telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool", extra=(
        "  bodies: {request: true, response: true, redact: 'plugins.pii:redact_for_log'}\n"))
    gw = make_gateway(gateway_config(upstream.url, extra=tel + "plugins:\n  - {path: pii}\n"))
    echoed = {"id": "c1", "object": "chat.completion", "created": 1, "model": "up-model",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "You wrote to bob@corp.example"},
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}}
    upstream.json(echoed)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(model="gpt-test", extra_headers={"x-request-id": "pii-1"}, messages=[
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": PII_TEXT}]}])
    assert answer.choices[0].message.content == "You wrote to bob@corp.example"  # the client gets the answer as is
    sent = upstream.last.body.decode()
    for secret in ("jane.doe", "7946", "123-4567", "4111", "5500"):
        assert secret not in sent
    assert orjson.loads(sent)["messages"][1]["content"][0]["text"] == (
        "Reach Jane at [EMAIL] or [PHONE], Bob on [PHONE], card [CARD] / [CARD].")
    flushed = httpx.post(f"{gw.url}/admin/telemetry/flush", timeout=30).json()
    assert flushed["flushed"]

    def rows():
        client = chdb_client(tdb)
        try:
            return client.query("SELECT request_body, response_body FROM llm_requests "
                                "WHERE client_request_id = 'pii-1'").result_rows
        finally:
            client.close()

    request_body, response_body = wait_for(rows, what="the row")[0]
    assert "[EMAIL]" in request_body and "[CARD]" in request_body and "jane.doe" not in request_body
    assert "bob@corp.example" not in response_body and "[EMAIL]" in response_body
    assert orjson.loads(response_body)["choices"][0]["message"]["content"] == "You wrote to [EMAIL]"
