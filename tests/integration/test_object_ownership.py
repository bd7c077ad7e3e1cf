"""A tenant reaches only the stored objects its own keys created, though every tenant's files and
batches live in the one backend account ``passthrough:`` sends them to: another tenant's (or an
unknown) object answers 404 as if it did not exist and nothing reaches the account; lists show
the caller's own; a batch cannot be built on another's file. The admin key reaches all, and
adopts what was made outside the gateway. The ledger is shared by gateways on one host (SQLite
in the data folder) and by instances sharing a Redis.

Real HTTP throughout: the official OpenAI SDK against gateways in front of a fake account that
stores what it is sent (tests/support/fake_files.py).
"""

from __future__ import annotations

import hashlib
import shutil

import anthropic
import httpx
import openai
import pytest

from tests.support.fake_anthropic_batches import FakeAnthropicAccount
from tests.support.fake_files import FakeFilesAccount
from tests.support.polling import wait_for
from tests.support.redis_server import RedisServer

KEY_A, KEY_B, ADMIN = "sk-gw-own-a-0123456789abcdef", "sk-gw-own-b-0123456789abcdef", "adm-ownership-1"
LINES = b'{"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _config(url: str, extra: str = "") -> str:
    return f"""
server: {{admin_key: {ADMIN}}}
telemetry: {{enabled: false}}
backends:
  openai: {{type: openai, base_url: "{url}", api_key: sk-backend-secret}}
  mock: {{type: mock}}
models:
  mock-gpt: {{targets: [{{backend: mock}}]}}
  tuned: {{targets: [{{backend: openai}}]}}
passthrough:
  - {{path: "files*", backend: openai}}
  - {{path: "batches*", backend: openai}}
  - {{path: "vector_stores*", backend: openai}}
  - {{path: "chat/completions/*", backend: openai}}
  - {{path: "conversations*", backend: openai}}
keys:
  - {{tenant: team-a, sha256: {_sha(KEY_A)}, endpoints: ["*"]}}
  - {{tenant: team-b, sha256: {_sha(KEY_B)}, endpoints: ["*"]}}
{extra}"""


@pytest.fixture
def account():
    with FakeFilesAccount() as fake:
        yield fake


def sdk(gw, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def upload(gw, key: str, name: str = "b.jsonl") -> str:
    return sdk(gw, key).files.create(file=(name, LINES, "application/jsonl"), purpose="batch").id


def assert_missing(call, object_id: str, param: str = "id") -> None:
    """``call`` answers 404 in OpenAI's shape, as for an object that does not exist."""
    with pytest.raises(openai.NotFoundError) as caught:
        call()
    assert caught.value.status_code == 404
    assert caught.value.body == {"message": f"No such object: {object_id}", "type": "invalid_request_error",
                                 "param": param, "code": "not_found"}


def test_another_tenants_file_and_batch_are_not_there(make_gateway, account):
    gw = make_gateway(_config(account.url))
    a, b = sdk(gw, KEY_A), sdk(gw, KEY_B)
    file_a = upload(gw, KEY_A)
    batch_a = a.batches.create(input_file_id=file_a, endpoint="/v1/chat/completions", completion_window="24h").id
    file_b = upload(gw, KEY_B)
    seen = len(account.received)

    assert_missing(lambda: b.files.retrieve(file_a), file_a)
    assert_missing(lambda: b.files.content(file_a), file_a)
    assert_missing(lambda: b.files.delete(file_a), file_a)
    assert_missing(lambda: b.batches.create(input_file_id=file_a, endpoint="/v1/chat/completions",
                                            completion_window="24h"), file_a, "input_file_id")
    assert_missing(lambda: b.batches.retrieve(batch_a), batch_a)
    assert_missing(lambda: b.batches.cancel(batch_a), batch_a)
    assert_missing(lambda: b.vector_stores.create(name="x", file_ids=[file_b, file_a]), file_a, "file_ids")
    assert_missing(lambda: b.fine_tuning.jobs.create(model="tuned", training_file=file_a), file_a, "training_file")
    assert len(account.received) == seen  # refused before the account was asked
    assert [f.id for f in b.files.list()] == [file_b]
    assert [x.id for x in b.batches.list()] == []
    assert file_a in account.files and account.batches[batch_a]["status"] == "validating"  # untouched

    # The owner reaches its own.
    assert a.files.retrieve(file_a).filename == "b.jsonl" and a.files.content(file_a).content == LINES
    assert [f.id for f in a.files.list()] == [file_a]
    assert a.batches.retrieve(batch_a).input_file_id == file_a
    assert [x.id for x in a.batches.list()] == [batch_a]
    # The admin key reaches every tenant's.
    admin = sdk(gw, ADMIN)
    assert {f.id for f in admin.files.list()} == {file_a, file_b}
    assert admin.files.retrieve(file_b).id == file_b and admin.batches.retrieve(batch_a).id == batch_a
    assert admin.files.delete(file_b).deleted is True and file_b not in account.files
    file_admin = upload(gw, ADMIN)  # the admin's own records nothing: no tenant's until adopted
    assert_missing(lambda: a.files.retrieve(file_admin), file_admin)


@pytest.mark.parametrize("stream", [False, True])
def test_a_stored_chat_completion_is_its_tenants(make_gateway, account, stream):
    """``store: true`` keeps a completion at the backend: its id is recorded, streamed or not
    (a stream's as it ends); without ``store`` nothing is kept, so nothing is recorded."""
    gw = make_gateway(_config(account.url))
    a = sdk(gw, KEY_A)
    msgs = [{"role": "user", "content": "hi"}]
    if stream:
        with a.chat.completions.create(model="mock-gpt", messages=msgs, store=True, stream=True) as chunks:
            kept = [c.id for c in chunks][0]
    else:
        kept = a.chat.completions.create(model="mock-gpt", messages=msgs, store=True).id
    not_kept = a.chat.completions.create(model="mock-gpt", messages=msgs).id
    assert_missing(lambda: sdk(gw, KEY_B).chat.completions.retrieve(kept), kept)
    assert_missing(lambda: a.chat.completions.retrieve(not_kept), not_kept)
    assert not account.received

    def forwarded() -> bool:  # (the fake account does not serve completions: its 404 shows it was asked)
        try:
            a.chat.completions.retrieve(kept)
        except openai.NotFoundError:
            return ("GET", f"/v1/chat/completions/{kept}") in account.received
        return False

    wait_for(forwarded, what="the stored completion to be the tenant's")


def test_a_deleted_file_is_forgotten_and_a_file_made_elsewhere_needs_adopting(make_gateway, account):
    gw = make_gateway(_config(account.url))
    a = sdk(gw, KEY_A)
    file_a = upload(gw, KEY_A)
    assert a.files.delete(file_a).deleted is True
    seen = len(account.received)
    assert_missing(lambda: a.files.retrieve(file_a), file_a)  # the ledger forgot it: not asked again
    assert len(account.received) == seen

    direct = account.store()  # in the account, not made through the gateway: the admin key's only
    assert_missing(lambda: a.files.retrieve(direct), direct)
    assert direct not in [f.id for f in a.files.list()]
    assert sdk(gw, ADMIN).files.retrieve(direct).id == direct
    bad = httpx.post(f"{gw.url}/admin/objects", json={"tenant": "team-a", "ids": [direct]},
                     headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
    assert bad.status_code == 401  # adopting is the admin's
    r = httpx.post(f"{gw.url}/admin/objects", json={"tenant": "team-a", "ids": [direct]},
                   headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    assert r.status_code == 200 and r.json() == {"tenant": "team-a", "adopted": 1}
    assert a.files.retrieve(direct).id == direct and [f.id for f in a.files.list()] == [direct]
    assert_missing(lambda: sdk(gw, KEY_B).files.retrieve(direct), direct)


def test_lists_are_cut_to_the_callers_objects_and_still_page(make_gateway, account):
    """Another tenant's newer files in between: a page of ``limit`` still holds the caller's
    (asked of the account 100 at a time), and the SDK's paging reaches every one of them."""
    gw = make_gateway(_config(account.url))
    mine = []
    for i in range(5):
        mine.append(upload(gw, KEY_A, f"a{i}.jsonl"))
        upload(gw, KEY_B, f"b{i}.jsonl")
    page = sdk(gw, KEY_A).files.list(limit=2)
    assert [f.id for f in page.data] == mine[::-1][:2] and page.has_more is True
    assert ("GET", "/v1/files") == account.received[-1]
    assert [f.id for f in sdk(gw, KEY_A).files.list(limit=2)] == mine[::-1]  # every page, in order
    assert len({f.id for f in sdk(gw, KEY_B).files.list(limit=3)}) == 5


def test_shared_objects_serve_every_key_alike(make_gateway, account):
    """``auth.stored_objects: shared`` (one tenant's deployment): no ledger, as before."""
    gw = make_gateway(_config(account.url, "auth: {stored_objects: shared}"))
    file_a = upload(gw, KEY_A)
    assert sdk(gw, KEY_B).files.retrieve(file_a).id == file_a
    direct = account.store()
    assert {f.id for f in sdk(gw, KEY_B).files.list()} == {file_a, direct}


def test_gateways_on_one_host_share_the_ledger(make_gateway, account):
    one, two = make_gateway(_config(account.url)), make_gateway(_config(account.url))
    file_a = upload(one, KEY_A)
    assert sdk(two, KEY_A).files.retrieve(file_a).id == file_a
    assert_missing(lambda: sdk(two, KEY_B).files.retrieve(file_a), file_a)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_instances_sharing_a_redis_share_the_ledger(make_gateway, account, tmp_path):
    redis = RedisServer().start()
    try:
        extra = f"limits: {{redis_url: '{redis.url}'}}"
        # Each instance with a data folder of its own: only Redis is shared.
        one = make_gateway(_config(account.url, extra))
        file_a = upload(one, KEY_A)
        two = make_gateway(_config(account.url, extra).replace("telemetry: {enabled: false}",
                                                                f"telemetry: {{enabled: false, data_dir: '{tmp_path}'}}"))
        assert sdk(two, KEY_A).files.retrieve(file_a).id == file_a
        assert_missing(lambda: sdk(two, KEY_B).files.retrieve(file_a), file_a)
        file_a2 = upload(two, KEY_A)
        assert sdk(two, KEY_A).files.delete(file_a).deleted is True
        with redis.client() as client:
            assert client.keys("*") == [f"llmgw:object:{file_a2}".encode()]  # file_a forgotten everywhere
        redis.stop()  # who owns what cannot be read: refused, never served unchecked
        with pytest.raises(openai.InternalServerError) as caught:
            sdk(one, KEY_A).files.retrieve(file_a2)
        assert caught.value.status_code == 503 and caught.value.body["code"] == "service_unavailable"
    finally:
        redis.stop()


def test_a_finished_batchs_result_files_are_its_owners(make_gateway, account):
    """The account makes a batch's output and error files itself: the batch's answer (retrieved,
    or in a list) names them, and they become its owner's, no one else's."""
    gw = make_gateway(_config(account.url))
    a, b = sdk(gw, KEY_A), sdk(gw, KEY_B)
    file_a = upload(gw, KEY_A)
    one, two = (a.batches.create(input_file_id=file_a, endpoint="/v1/chat/completions",
                                 completion_window="24h").id for _ in range(2))
    out1, err1 = account.complete(one)
    out2, err2 = account.complete(two)
    assert_missing(lambda: a.files.content(out1), out1)  # not yet seen through the gateway
    assert_missing(lambda: b.batches.retrieve(one), one)  # another's batch names nothing to it
    assert_missing(lambda: b.files.content(out1), out1)

    done = a.batches.retrieve(one)
    assert (done.output_file_id, done.error_file_id) == (out1, err1)
    assert a.files.content(out1).content == b'{"id": "out"}\n' and a.files.retrieve(err1).id == err1
    assert [x.id for x in a.batches.list()] == [two, one]  # a list names the files of the batches it keeps
    assert a.files.content(out2).content == b'{"id": "out"}\n' and a.files.retrieve(err2).id == err2
    for made in (out1, err1, out2, err2):
        assert_missing(lambda made=made: b.files.content(made), made)
    assert [x.id for x in b.batches.list()] == []
    assert out1 not in {f.id for f in b.files.list()} and out1 in {f.id for f in a.files.list()}


def test_a_conversation_is_its_creators(make_gateway, account):
    """A conversation made through the gateway is its tenant's: its items, and a Responses turn
    naming it (``conversation`` as an id or as ``{"id": ...}``), are refused to any other."""
    gw = make_gateway(_config(account.url))
    a, b = sdk(gw, KEY_A), sdk(gw, KEY_B)
    conv = a.conversations.create().id
    a.conversations.items.create(conv, items=[{"type": "message", "role": "user", "content": "hi"}])
    assert len(a.conversations.items.list(conv).data) == 1
    seen = len(account.received)
    assert_missing(lambda: b.conversations.items.list(conv), conv)
    assert_missing(lambda: b.conversations.items.create(conv, items=[]), conv)
    assert_missing(lambda: b.responses.create(model="tuned", input="x", conversation=conv), conv, "conversation")
    assert_missing(lambda: b.responses.create(model="tuned", input="x", conversation={"id": conv}), conv,
                   "conversation")
    assert len(account.received) == seen
    assert a.responses.create(model="tuned", input="x", conversation={"id": conv}).conversation.id == conv


def test_every_id_in_a_path_is_checked(make_gateway, account):
    """``/v1/vector_stores/{vs}/files/{file}``: the caller's own vector store does not open
    another tenant's file, nor another's file batch; nor can a file batch (either form) add one."""
    gw = make_gateway(_config(account.url))
    a, b = sdk(gw, KEY_A), sdk(gw, KEY_B)
    file_a, file_b = upload(gw, KEY_A), upload(gw, KEY_B)
    vs_a, vs_b = a.vector_stores.create(name="a").id, b.vector_stores.create(name="b").id
    a.vector_stores.files.create(vector_store_id=vs_a, file_id=file_a)
    b.vector_stores.files.create(vector_store_id=vs_b, file_id=file_b)
    fb_b = b.vector_stores.file_batches.create(vs_b, files=[{"file_id": file_b}]).id
    account.vector_stores[vs_a].add(file_b)  # as if it were in a's store: the path still refuses it
    seen = len(account.received)
    assert_missing(lambda: a.vector_stores.files.retrieve(file_b, vector_store_id=vs_a), file_b)
    assert_missing(lambda: a.vector_stores.files.content(file_b, vector_store_id=vs_a), file_b)
    assert_missing(lambda: a.vector_stores.files.delete(file_b, vector_store_id=vs_a), file_b)
    assert_missing(lambda: a.vector_stores.file_batches.retrieve(fb_b, vector_store_id=vs_a), fb_b)
    assert_missing(lambda: a.vector_stores.file_batches.cancel(fb_b, vector_store_id=vs_a), fb_b)
    assert_missing(lambda: a.vector_stores.file_batches.create(vs_a, files=[{"file_id": file_b}]), file_b, "files")
    assert_missing(lambda: a.vector_stores.file_batches.create(vs_a, file_ids=[file_b]), file_b, "file_ids")
    assert len(account.received) == seen
    assert a.vector_stores.files.retrieve(file_a, vector_store_id=vs_a).id == file_a
    assert a.vector_stores.files.content(file_a, vector_store_id=vs_a).data[0].text == LINES.decode()
    fb_a = a.vector_stores.file_batches.create(vs_a, files=[{"file_id": file_a}]).id
    assert a.vector_stores.file_batches.retrieve(fb_a, vector_store_id=vs_a).id == fb_a
    assert a.vector_stores.files.delete(file_a, vector_store_id=vs_a).deleted is True
    assert a.files.retrieve(file_a).id == file_a  # leaving a vector store does not forget the file


def test_ids_nested_in_a_body_are_checked(make_gateway, account):
    """A Responses turn's ``input_file``/``input_image`` parts and ``file_search`` tool, a chat
    message's ``file`` part and an Anthropic document's ``source`` name files too: another
    tenant's answer 404 (Anthropic's shape on /v1/messages) and nothing is sent on."""
    gw = make_gateway(_config(account.url))
    a, b = sdk(gw, KEY_A), sdk(gw, KEY_B)
    file_a = upload(gw, KEY_A)
    vs_a = a.vector_stores.create(name="a").id
    anthropic_file = "file_011CNha8iCJcU1wXNR6q4V8w"  # made at Anthropic, adopted for team-a
    r = httpx.post(f"{gw.url}/admin/objects", json={"tenant": "team-a", "ids": [anthropic_file]},
                   headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    assert r.status_code == 200
    part = {"type": "input_file", "file_id": file_a}
    turns = [
        {"input": [{"role": "user", "content": [part]}]},
        {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": file_a, "detail": "auto"}]}]},
        {"input": "x", "tools": [{"type": "file_search", "vector_store_ids": [vs_a]}]},
    ]
    seen = len(account.received)
    for turn, wanted in zip(turns, (file_a, file_a, vs_a)):
        param = "tools" if "tools" in turn else "input"
        assert_missing(lambda turn=turn: b.responses.create(model="tuned", **turn), wanted, param)
    chat = [{"role": "user", "content": [{"type": "file", "file": {"file_id": file_a}}]}]
    assert_missing(lambda: b.chat.completions.create(model="mock-gpt", messages=chat), file_a, "messages")
    escaped = b'{"model": "mock-gpt", "messages": [{"role": "user", "content": [{"type": "file", ' \
              b'"file": {"file\\u005fid": "' + file_a.encode() + b'"}}]}]}'
    sneaky = httpx.post(f"{gw.url}/v1/chat/completions", content=escaped, timeout=30,
                        headers={"Authorization": f"Bearer {KEY_B}", "Content-Type": "application/json"})
    assert sneaky.status_code == 404 and sneaky.json()["error"]["param"] == "messages"
    assert len(account.received) == seen
    for turn in turns:  # the owner's own pass
        assert a.responses.create(model="tuned", **turn).status == "completed"
    assert a.chat.completions.create(model="mock-gpt", messages=chat).choices

    doc = [{"role": "user", "content": [
        {"type": "document", "source": {"type": "file", "file_id": anthropic_file}},
        {"type": "text", "text": "summarise"}]}]
    claude_b = anthropic.Anthropic(base_url=gw.url, api_key=KEY_B, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude_b.messages.create(model="mock-gpt", max_tokens=5, messages=doc)
    assert caught.value.body["type"] == "error" and anthropic_file in caught.value.body["error"]["message"]
    claude_a = anthropic.Anthropic(base_url=gw.url, api_key=KEY_A, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:  # past the ownership check: the mock
        claude_a.messages.create(model="mock-gpt", max_tokens=5, messages=doc)  # backend reads no documents
    assert "not supported" in caught.value.message


def test_the_admin_key_reaches_a_translated_response(make_gateway, account):
    """A response the gateway answered by translation is kept per tenant: the admin key reads,
    lists and deletes it through its owner (the ledger's), other tenants do not reach it."""
    gw = make_gateway(_config(account.url))
    a, admin = sdk(gw, KEY_A), sdk(gw, ADMIN)
    kept = a.responses.create(model="mock-gpt", input="hi")
    assert_missing(lambda: sdk(gw, KEY_B).responses.retrieve(kept.id), kept.id)
    assert admin.responses.retrieve(kept.id).id == kept.id
    assert [i.type for i in admin.responses.input_items.list(kept.id)] == ["message"]
    admin.responses.delete(kept.id)
    assert_missing(lambda: a.responses.retrieve(kept.id), kept.id)  # deleted, and forgotten
    with pytest.raises(openai.NotFoundError):
        admin.responses.retrieve(kept.id)


def _anthropic_config(url: str, server: str = "") -> str:
    """``_config`` with Anthropic's Files and Message Batches passed through to a ``type: anthropic``
    backend at ``url``; ``server``: more ``server:`` settings."""
    return _config(url).replace("server: {", "server: {" + server).replace(
        "  openai: {type: openai,", f'  anth: {{type: anthropic, base_url: "{url}", api_key: sk-ant-secret}}\n'
        "  openai: {type: openai,").replace('  - {path: "files*", backend: openai}',
                                           '  - {path: "files*", backend: anth}\n'
                                           '  - {path: "messages/batches*", backend: anth}')


def test_anthropic_message_batches_and_files_pass_through_owned(make_gateway):
    """``passthrough:`` to an Anthropic backend sends its Files and Message Batches requests with
    the backend's key; a batch's ``results_url`` points at the gateway, so the anthropic SDK
    fetches the results through it (owned like the batch), never with the tenant's gateway key
    at the provider."""
    with FakeAnthropicAccount() as claude:
        gw = make_gateway(_anthropic_config(claude.url))
        a = anthropic.Anthropic(base_url=gw.url, api_key=KEY_A, max_retries=0)
        b = anthropic.Anthropic(base_url=gw.url, api_key=KEY_B, max_retries=0)
        uploaded = a.beta.files.upload(file=("a.txt", b"hello", "text/plain"))
        assert a.beta.files.retrieve_metadata(uploaded.id).id == uploaded.id
        with pytest.raises(anthropic.NotFoundError):
            b.beta.files.retrieve_metadata(uploaded.id)
        params = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        batch = a.messages.batches.create(requests=[{"custom_id": "one", "params": params}])
        assert batch.results_url == f"{gw.url}/v1/messages/batches/{batch.id}/results"
        assert a.messages.batches.retrieve(batch.id).results_url == batch.results_url
        assert [x.results_url for x in a.messages.batches.list()] == [batch.results_url]
        assert [r.custom_id for r in a.messages.batches.results(batch.id)] == ["one"]
        with pytest.raises(anthropic.NotFoundError):
            b.messages.batches.results(batch.id)
        assert [x.id for x in b.messages.batches.list()] == []
        forged = httpx.get(f"{gw.url}/v1/messages/batches/{batch.id}", timeout=30,
                           headers={"x-api-key": KEY_A, "anthropic-version": "2023-06-01",
                                    "X-Forwarded-Host": "elsewhere.example", "X-Forwarded-Proto": "https"})
        assert forged.json()["results_url"] == batch.results_url  # not from an untrusted peer
        proxied = make_gateway(_anthropic_config(claude.url, "trusted_proxies: ['127.0.0.1/32'], "))
        behind = httpx.get(f"{proxied.url}/v1/messages/batches/{batch.id}", timeout=30,
                           headers={"x-api-key": KEY_A, "anthropic-version": "2023-06-01",
                                    "X-Forwarded-Host": "gw.example", "X-Forwarded-Proto": "https"})
        assert behind.json()["results_url"] == f"https://gw.example/v1/messages/batches/{batch.id}/results"
        keys = {key for _, _, key in claude.received}
        assert keys == {"sk-ant-secret"}  # only the backend's key ever reached the account
        assert ("GET", f"/v1/messages/batches/{batch.id}/results", "sk-ant-secret") in claude.received


def test_cursors_types_and_limits_are_checked_before_the_account_is_asked(make_gateway, account):
    """A page cursor naming another tenant's object answers as for an unknown one; an id field
    of the wrong type (a list where an id belongs) and ``limit=0`` are refused (400)."""
    gw = make_gateway(_config(account.url))
    a, b = sdk(gw, KEY_A), sdk(gw, KEY_B)
    file_a = upload(gw, KEY_A)
    batch_a = a.batches.create(input_file_id=file_a, endpoint="/v1/chat/completions", completion_window="24h").id
    seen = len(account.received)
    for cursor in ("after", "before"):
        for unknown in (batch_a, "batch_nonexistent"):  # another's and an unknown one: the same answer
            assert_missing(lambda c=cursor, u=unknown: b.batches.list(extra_query={c: u}), unknown, cursor)
    assert_missing(lambda: b.files.list(after=file_a), file_a, "after")
    for body, field in (({"input_file_id": [file_a]}, "input_file_id"), ({"file_ids": file_a}, "file_ids"),
                        ({"file_ids": [file_a, 3]}, "file_ids"), ({"conversation": ["conv_1"]}, "conversation")):
        r = httpx.post(f"{gw.url}/v1/batches", timeout=30, headers={"Authorization": f"Bearer {KEY_B}"},
                       json={"endpoint": "/v1/chat/completions", "completion_window": "24h", **body})
        assert r.status_code == 400 and r.json()["error"]["param"] == field, r.text
    with pytest.raises(openai.BadRequestError) as caught:
        a.files.list(limit=0)
    assert caught.value.body["param"] == "limit"
    assert len(account.received) == seen
    assert [f.id for f in a.files.list(after=file_a)] == []  # the owner's own cursor pages on


def test_the_admin_key_lists_every_model_and_adopts_for_known_tenants_only(make_gateway, account):
    gw = make_gateway(_config(account.url))
    assert {m.id for m in sdk(gw, ADMIN).models.list()} == {"mock-gpt", "tuned"}
    assert sdk(gw, ADMIN).models.retrieve("tuned").id == "tuned"
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, "sk-not-a-key-0123456789").models.list()
    r = httpx.post(f"{gw.url}/admin/objects", json={"tenant": "team-typo", "ids": ["file-x"]},
                   headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_tenant"
