"""A fake OpenAI account that stores what it is sent: files (upload, list with ``limit``/``after``,
retrieve, content, delete) and batches (create on an existing file, retrieve, list, cancel), in
OpenAI's shapes and errors. ``received`` lists ``(method, path)`` of every request, so a test can
show that a refused one never reached the account.
"""

from __future__ import annotations

import itertools
import uuid

from aiohttp import web

from gateway.proxy.server import BackgroundServer


def _missing(kind: str, object_id: str) -> web.Response:
    return web.json_response({"error": {"message": f"No such {kind} object: {object_id}",
                                        "type": "invalid_request_error", "param": "id", "code": None}}, status=404)


def _page(items: list[dict], request: web.Request) -> web.Response:
    """Newest first, ``limit`` (default 20) after the ``after`` cursor, with OpenAI's page fields."""
    items = sorted(items, key=lambda x: x["created_at"], reverse=True)
    after = request.query.get("after")
    if after:
        ids = [x["id"] for x in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    limit = int(request.query.get("limit", "20"))
    page = items[:limit]
    return web.json_response({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                              "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit})


class FakeFilesAccount:
    """The account (``url``: its ``/v1`` base). ``files``/``batches``: what it stores, by id."""

    def __init__(self) -> None:
        self.files: dict[str, dict] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.received: list[tuple[str, str]] = []
        self._clock = itertools.count(1_700_000_000)
        app = web.Application(middlewares=[self._record])
        r = app.router
        r.add_post("/v1/files", self._upload)
        r.add_get("/v1/files", self._files)
        r.add_get("/v1/files/{id}", self._file)
        r.add_delete("/v1/files/{id}", self._delete)
        r.add_get("/v1/files/{id}/content", self._content)
        r.add_post("/v1/batches", self._batch)
        r.add_get("/v1/batches", self._batches)
        r.add_get("/v1/batches/{id}", self._get_batch)
        r.add_post("/v1/batches/{id}/cancel", self._cancel)
        self._server = BackgroundServer(app)

    @property
    def url(self) -> str:
        return f"{self._server.url}/v1"

    def __enter__(self) -> FakeFilesAccount:
        self._server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._server.__exit__(*exc)

    def store(self, content: bytes = b"{}\n", purpose: str = "batch") -> str:
        """A file put in the account directly (not through the gateway); its id."""
        return self._add(content, "direct.jsonl", purpose)["id"]

    def complete(self, batch_id: str) -> tuple[str, str]:
        """``batch_id`` finishes as the account would: its output and error files are made (in
        the account, not through the gateway) and named in the batch; their ids."""
        out, err = self._add(b'{"id": "out"}\n', "output.jsonl", "batch_output"), \
            self._add(b'{"id": "err"}\n', "errors.jsonl", "batch_output")
        self.batches[batch_id].update(status="completed", output_file_id=out["id"], error_file_id=err["id"])
        return out["id"], err["id"]

    def _add(self, content: bytes, filename: str, purpose: str) -> dict:
        file = {"id": f"file-{uuid.uuid4().hex[:24]}", "object": "file", "bytes": len(content),
                "created_at": next(self._clock), "filename": filename, "purpose": purpose, "status": "processed"}
        self.files[file["id"]], self.contents[file["id"]] = file, content
        return file

    @web.middleware
    async def _record(self, request: web.Request, handler):
        self.received.append((request.method, request.path))
        return await handler(request)

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        return web.json_response(self._add(upload.file.read(), upload.filename, str(form["purpose"])))

    async def _files(self, request: web.Request) -> web.Response:
        return _page(list(self.files.values()), request)

    async def _batches(self, request: web.Request) -> web.Response:
        return _page(list(self.batches.values()), request)

    async def _file(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["id"])
        return web.json_response(file) if file else _missing("File", request.match_info["id"])

    async def _delete(self, request: web.Request) -> web.Response:
        file_id = request.match_info["id"]
        if self.files.pop(file_id, None) is None:
            return _missing("File", file_id)
        return web.json_response({"id": file_id, "object": "file", "deleted": True})

    async def _content(self, request: web.Request) -> web.Response:
        file_id = request.match_info["id"]
        if file_id not in self.files:
            return _missing("File", file_id)
        return web.Response(body=self.contents[file_id], content_type="application/octet-stream")

    async def _batch(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("input_file_id") not in self.files:
            return _missing("File", str(body.get("input_file_id")))
        batch = {"id": f"batch_{uuid.uuid4().hex[:24]}", "object": "batch", "endpoint": body["endpoint"],
                 "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
                 "status": "validating", "created_at": next(self._clock)}
        self.batches[batch["id"]] = batch
        return web.json_response(batch)

    async def _get_batch(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        return web.json_response(batch) if batch else _missing("Batch", request.match_info["id"])

    async def _cancel(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _missing("Batch", request.match_info["id"])
        batch["status"] = "cancelling"
        return web.json_response(batch)
