"""Which stored objects a request names, lists or creates: paths, body fields and answers read
as OpenAI shapes them. Pure functions; ``gateway.ownership.stage`` decides what to do with them.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.errors import InvalidRequestError

# The collections of objects a backend account stores, as paths below /v1/: ``<collection>``
# lists (GET) or creates (POST), ``<collection>/<id>[/...]`` names one object. The words that
# follow a collection without being an id (``responses/input_tokens``) are listed with it.
COLLECTIONS: dict[str, frozenset[str]] = {
    "files": frozenset(),
    "uploads": frozenset(),
    "batches": frozenset(),
    "vector_stores": frozenset(),
    "responses": frozenset({"input_tokens", "compact"}),
    "chat/completions": frozenset(),
    "fine_tuning/jobs": frozenset(),
    "conversations": frozenset(),
    "containers": frozenset(),
    "assistants": frozenset(),
    "threads": frozenset({"runs"}),
    "evals": frozenset(),
    "videos": frozenset(),
    "messages/batches": frozenset(),  # Anthropic's Message Batches (its Files API is at files/ too)
}


def _by_head() -> dict[str, tuple[str, ...]]:
    """The collections by their first segment: a request outside them costs one look-up."""
    out: dict[str, tuple[str, ...]] = {}
    for name in COLLECTIONS:
        head = name.split("/", 1)[0]
        out[head] = (*out.get(head, ()), name)
    return out


_BY_HEAD = _by_head()

# Body fields that name an object the request uses (a batch's input file, a fine-tune's data,
# the files added to a vector store, the response a native /v1/responses turn continues; and
# ``conversation``, the conversation a turn is added to).
REFERENCE_FIELDS = ("input_file_id", "training_file", "validation_file", "file_id", "previous_response_id")
REFERENCE_LISTS = ("file_ids", "vector_store_ids")


def collection_of(endpoint: str) -> str | None:
    """The collection ``endpoint`` (the path below /v1/) is in, or None. Matched in any case:
    a backend that ignores the case of paths serves ``/v1/Files`` as ``/v1/files``."""
    lowered = endpoint.lower()
    for name in _BY_HEAD.get(lowered.split("/", 1)[0], ()):
        if lowered.startswith(name) and (len(lowered) == len(name) or lowered[len(name)] == "/"):
            return name
    return None


def named_id(endpoint: str, collection: str) -> str | None:
    """The id ``endpoint`` names in ``collection`` (``files/file-abc/content`` → ``file-abc``),
    or None for the collection itself or one of its action words."""
    rest = endpoint[len(collection) + 1:]
    object_id = rest.split("/", 1)[0]
    if not object_id or object_id in COLLECTIONS[collection]:
        return None
    return object_id


# Below an object, the sub-collections whose next segment names an object made through the
# gateway too (recorded from its create answer): a vector store's files and file batches, a
# thread's runs, an eval's runs. ``vector_stores/{vs}/files/{file}`` needs both to be the caller's.
SUB_OBJECTS: dict[str, frozenset[str]] = {
    "vector_stores": frozenset({"files", "file_batches"}),
    "threads": frozenset({"runs"}),
    "evals": frozenset({"runs"}),
}


def path_ids(endpoint: str, collection: str) -> list[str]:
    """Every id ``endpoint`` names: the object after ``collection`` and, below it, the object
    of a ``SUB_OBJECTS`` sub-collection (``vector_stores/vs_1/files/file-2`` → both)."""
    first = named_id(endpoint, collection)
    if first is None:
        return []
    subs = SUB_OBJECTS.get(collection)
    if subs is not None:
        parts = endpoint[len(collection) + 1:].split("/", 3)
        if len(parts) > 2 and parts[2] and parts[1].lower() in subs:
            return [first, parts[2]]
    return [first]


def _wrong_type(field: str, expected: str) -> InvalidRequestError:
    return InvalidRequestError(f"Invalid type for '{field}': expected {expected}.", param=field,
                               code="invalid_type")


def referenced_ids(body: Any) -> list[tuple[str, str]]:
    """``(field, id)`` for each object a JSON body names in ``REFERENCE_FIELDS``/``REFERENCE_LISTS``,
    ``conversation`` and ``files``. Raises ``InvalidRequestError`` (400) for such a field of
    another type (a list where an id belongs), which would otherwise go on unchecked."""
    if not isinstance(body, dict):
        return []
    out = []
    for field in REFERENCE_FIELDS:
        value = body.get(field)
        if isinstance(value, str):
            if value:
                out.append((field, value))
        elif value is not None:  # never skipped unchecked: refused, as the API would
            raise _wrong_type(field, "a string")
    conversation = body.get("conversation")  # a Responses turn in a conversation: its id, or {"id": ...}
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    if isinstance(conversation, str):
        if conversation:
            out.append(("conversation", conversation))
    elif conversation is not None:
        raise _wrong_type("conversation", 'a string or {"id": "<conversation id>"}')
    for field in REFERENCE_LISTS:
        values = body.get(field)
        if values is None:
            continue
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _wrong_type(field, "an array of strings")
        out.extend((field, v) for v in values if v)
    files = body.get("files")  # a vector store file batch's newer form: [{"file_id": ...}, ...]
    if isinstance(files, list):
        out.extend(("files", v) for x in files if isinstance(x, dict) and isinstance(v := x.get("file_id"), str) and v)
    return out


def _kind(item: dict) -> Any:
    """What an object says it is: OpenAI's ``object``, Anthropic's ``type`` (``file``, ``message_batch``)."""
    return item.get("object", item.get("type"))


def created_ids(body: bytes) -> list[str]:
    """The ids of the objects a successful JSON answer describes: its own (``id`` with an
    ``object``, or Anthropic's ``type``, that is not a list), and a finished upload's ``file``."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    out = []
    for item in (parsed, parsed.get("file") if isinstance(parsed, dict) else None):
        if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"] and \
                isinstance(kind := _kind(item), str) and kind != "list":
            out.append(item["id"])
    return out


# Top-level fields of a batch or fine-tuning job answer that name the files the backend made
# for it (its output, its errors, a fine-tune's results): the job's owner's too.
_PRODUCED_BY = frozenset({"batch", "fine_tuning.job"})
_PRODUCED_MARKERS = (b"output_file_id", b"error_file_id", b"result_files")


def may_name_produced(body: bytes) -> bool:
    """Whether an answer may name produced files (a byte search, so most answers are not parsed)."""
    return any(m in body for m in _PRODUCED_MARKERS)


def produced_ids(item: Any) -> list[str]:
    """The ids of the files a batch or fine-tuning job (``item``, parsed) names as its results."""
    if not isinstance(item, dict) or _kind(item) not in _PRODUCED_BY:
        return []
    out = [v for f in ("output_file_id", "error_file_id") if isinstance(v := item.get(f), str) and v]
    results = item.get("result_files")
    if isinstance(results, list):
        out.extend(v for v in results if isinstance(v, str) and v)
    return out


def listing(body: bytes) -> dict[str, Any] | None:
    """A list answer (OpenAI's ``{"object": "list", "data": [...]}``, Anthropic's without
    ``object``), parsed; None for anything else."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(parsed, dict) and parsed.get("object", "list") == "list" and isinstance(parsed.get("data"), list):
        return parsed
    return None


def item_id(item: Any) -> str:
    """A list item's ``id`` ("" when it has none)."""
    value = item.get("id") if isinstance(item, dict) else None
    return value if isinstance(value, str) else ""


__all__ = ["COLLECTIONS", "REFERENCE_FIELDS", "REFERENCE_LISTS", "SUB_OBJECTS", "collection_of", "created_ids",
           "item_id", "listing", "may_name_produced", "named_id", "path_ids", "produced_ids", "referenced_ids"]
