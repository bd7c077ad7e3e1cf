"""A fake Anthropic account for its Files and Message Batches APIs: files (upload, retrieve)
and message batches (create, retrieve, list, results), in Anthropic's shapes, each batch ended
at once with ``results_url`` on the account's own host. ``received`` lists ``(method, path,
x-api-key)`` of every request, so a test can show which key reached the account.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from gateway.proxy.server import BackgroundServer


def _missing() -> web.Response:
    return web.json_response({"type": "error", "error": {"type": "not_found_error", "message": "Not found"}},
                             status=404)


class FakeAnthropicAccount:
    """The account (``url``: its ``/v1`` base)."""

    def __init__(self) -> None:
        self.batches: dict[str, dict] = {}
        self.files: dict[str, dict] = {}
        self.received: list[tuple[str, str, str]] = []
        app = web.Application(middlewares=[self._record])
        r = app.router
        r.add_post("/v1/files", self._upload)
        r.add_get("/v1/files/{id}", self._file)
        r.add_post("/v1/messages/batches", self._create)
        r.add_get("/v1/messages/batches", self._list)
        r.add_get("/v1/messages/batches/{id}", self._batch)
        r.add_get("/v1/messages/batches/{id}/results", self._results)
        self._server = BackgroundServer(app)

    @property
    def url(self) -> str:
        return f"{self._server.url}/v1"

    def __enter__(self) -> FakeAnthropicAccount:
        self._server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._server.__exit__(*exc)

    @web.middleware
    async def _record(self, request: web.Request, handler):
        self.received.append((request.method, request.path, request.headers.get("x-api-key", "")))
        return await handler(request)

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        data = upload.file.read()
        file = {"id": f"file_{uuid.uuid4().hex[:24]}", "type": "file", "filename": upload.filename,
                "mime_type": upload.content_type, "size_bytes": len(data), "created_at": "2025-01-01T00:00:00Z"}
        self.files[file["id"]] = file
        return web.json_response(file)

    async def _file(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["id"])
        return web.json_response(file) if file else _missing()

    async def _create(self, request: web.Request) -> web.Response:
        requests = (await request.json())["requests"]
        batch_id = f"msgbatch_{uuid.uuid4().hex[:24]}"
        batch = {"id": batch_id, "type": "message_batch", "processing_status": "ended",
                 "request_counts": {"processing": 0, "succeeded": len(requests), "errored": 0, "canceled": 0,
                                    "expired": 0},
                 "created_at": "2025-01-01T00:00:00Z", "expires_at": "2025-01-02T00:00:00Z",
                 "ended_at": "2025-01-01T00:01:00Z", "archived_at": None, "cancel_initiated_at": None,
                 "results_url": f"{self._server.url}/v1/messages/batches/{batch_id}/results",
                 "custom_ids": [r["custom_id"] for r in requests]}
        self.batches[batch_id] = batch
        return web.json_response({k: v for k, v in batch.items() if k != "custom_ids"})

    async def _list(self, request: web.Request) -> web.Response:
        data = [{k: v for k, v in b.items() if k != "custom_ids"} for b in reversed(self.batches.values())]
        return web.json_response({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})

    async def _batch(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        return web.json_response({k: v for k, v in batch.items() if k != "custom_ids"}) if batch else _missing()

    async def _results(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _missing()
        lines = [{"custom_id": c, "result": {"type": "succeeded", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
            "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}}}
            for c in batch["custom_ids"]]
        body = b"".join(web.json_response(x).body + b"\n" for x in lines)  # type: ignore[operator]
        return web.Response(body=body, content_type="application/binary")
