"""A fake OpenAI account that stores what it is sent: files (upload, list with ``limit``/``after``,
retrieve, content, delete), batches (create on an existing file, retrieve, list, cancel),
conversations (create, items), vector stores (create, their files and file batches) and
natively stored responses, in OpenAI's shapes and errors. ``received`` lists ``(method, path)``
of every request, so a test can show that a refused one never reached the account.
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
        self.conversations: dict[str, list[dict]] = {}  # id → its items
        self.vector_stores: dict[str, set[str]] = {}  # id → its files
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
        r.add_post("/v1/responses", self._response)
        r.add_post("/v1/conversations", self._conversation)
        r.add_get("/v1/conversations/{id}/items", self._items)
        r.add_post("/v1/conversations/{id}/items", self._items)
        r.add_post("/v1/vector_stores", self._vector_store)
        r.add_post("/v1/vector_stores/{vs}/files", self._vs_file)
        r.add_route("*", "/v1/vector_stores/{vs}/files/{id}", self._vs_file)
        r.add_get("/v1/vector_stores/{vs}/files/{id}/content", self._vs_file)
        r.add_post("/v1/vector_stores/{vs}/file_batches", self._vs_batch)
        r.add_route("*", "/v1/vector_stores/{vs}/file_batches/{id}", self._vs_batch)
        r.add_post("/v1/vector_stores/{vs}/file_batches/{id}/cancel", self._vs_batch)
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

    def _object(self, prefix: str, kind: str, **fields) -> dict:
        return {"id": f"{prefix}{uuid.uuid4().hex[:24]}", "object": kind, "created_at": next(self._clock), **fields}

    async def _response(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(self._object("resp_", "response", status="completed", model=body.get("model"),
                                              output=[], conversation=body.get("conversation")))

    async def _conversation(self, request: web.Request) -> web.Response:
        conversation = self._object("conv_", "conversation", metadata={})
        self.conversations[conversation["id"]] = []
        return web.json_response(conversation)

    async def _items(self, request: web.Request) -> web.Response:
        items = self.conversations.get(request.match_info["id"])
        if items is None:
            return _missing("Conversation", request.match_info["id"])
        added = [self._object("msg_", "message", **item) for item in (await request.json())["items"]] \
            if request.method == "POST" else []
        items.extend(added)
        shown = added if request.method == "POST" else items
        return web.json_response({"object": "list", "data": shown, "first_id": shown[0]["id"] if shown else None,
                                  "last_id": shown[-1]["id"] if shown else None, "has_more": False})

    async def _vector_store(self, request: web.Request) -> web.Response:
        store = self._object("vs_", "vector_store", name=(await request.json()).get("name"))
        self.vector_stores[store["id"]] = set()
        return web.json_response(store)

    async def _vs_file(self, request: web.Request) -> web.Response:
        vs = request.match_info["vs"]
        files = self.vector_stores.get(vs)
        if files is None:
            return _missing("VectorStore", vs)
        file_id = request.match_info.get("id") or (await request.json())["file_id"]
        if request.method == "POST" and "id" not in request.match_info:
            files.add(file_id)
        elif file_id not in files:
            return _missing("VectorStoreFile", file_id)
        elif request.method == "DELETE":
            files.discard(file_id)
            return web.json_response({"id": file_id, "object": "vector_store.file.deleted", "deleted": True})
        elif request.path.endswith("/content"):
            return web.json_response({"object": "vector_store.file_content.page", "data": [
                {"type": "text", "text": self.contents[file_id].decode()}], "has_more": False, "next_page": None})
        return web.json_response({"id": file_id, "object": "vector_store.file", "vector_store_id": vs,
                                  "status": "completed", "created_at": next(self._clock)})

    async def _vs_batch(self, request: web.Request) -> web.Response:
        vs = request.match_info["vs"]
        if vs not in self.vector_stores:
            return _missing("VectorStore", vs)
        if "id" in request.match_info:
            return web.json_response({"id": request.match_info["id"], "object": "vector_store.files_batch",
                                      "vector_store_id": vs, "status": "completed", "created_at": 0,
                                      "file_counts": {}})
        body = await request.json()
        ids = body.get("file_ids") or [f["file_id"] for f in body.get("files", [])]
        self.vector_stores[vs].update(ids)
        return web.json_response(self._object("vsfb_", "vector_store.files_batch", vector_store_id=vs,
                                              status="completed", file_counts={"completed": len(ids)}))
