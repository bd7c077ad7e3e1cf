"""Documents into chunks: plain text, Markdown and JSONL, by a size and an overlap in characters.

- **Text**: paragraphs (blank lines) are packed into windows of at most ``chunk_size``
  characters; a paragraph longer than that is split at sentence ends, and a sentence longer
  than that at spaces (a word longer than a window is cut). Each window after the first
  begins with up to ``chunk_overlap`` characters of the one before it, cut at a word start, so
  a sentence that straddles two windows is found from either.
- **Markdown**: split at headings first (not inside fenced code), then each section as text;
  each chunk's metadata ``section`` is its heading path (``Install > Linux``).
- **JSONL**: one document per line, its text in ``text_field`` (default ``text``), its id in
  ``id`` (else ``FILE:LINE``); the other scalar fields become metadata strings.

A chunk's id is stable: 32 hex digits of SHA-256 over (collection, doc_id, chunk_index), so
adding a document again replaces its chunks rather than adding copies.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdx")
JSONL_SUFFIXES = (".jsonl", ".ndjson")

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


class ChunkingError(ValueError):
    """A document that cannot be read as its kind (a bad JSONL line): the message names where."""


@dataclass(frozen=True)
class Chunk:
    """One chunk of a document: its position, text and metadata."""

    index: int
    text: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Document:
    """One document (a file, or a JSONL line) and its chunks, in order."""

    doc_id: str
    chunks: list[Chunk]


def chunk_id(collection: str, doc_id: str, index: int) -> str:
    """The stable id of chunk ``index`` of ``doc_id`` in ``collection``."""
    material = "\x00".join((collection, doc_id, str(index))).encode()
    return hashlib.sha256(material).hexdigest()[:32]


def check_sizes(chunk_size: int, chunk_overlap: int) -> None:
    """``ValueError`` unless ``0 <= chunk_overlap < chunk_size``."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1 character")
    if not 0 <= chunk_overlap < chunk_size:
        raise ValueError("chunk_overlap must be at least 0 and smaller than chunk_size")


def _pieces(text: str, size: int) -> list[tuple[str, str]]:
    """``(joiner, piece)`` pairs, each piece at most ``size`` characters; the joiner is what
    separates it from the piece before (a paragraph break or a space)."""
    out: list[tuple[str, str]] = []
    for paragraph in _PARAGRAPH.split(text.strip()):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        joiner = "\n\n"
        units = [paragraph] if len(paragraph) <= size else _SENTENCE_END.split(paragraph)
        for unit in units:
            for piece in _fit(unit.strip(), size):
                out.append((joiner, piece))
                joiner = " "
    return out


def _fit(unit: str, size: int) -> list[str]:
    """``unit`` as pieces of at most ``size`` characters, split at spaces (a longer word is cut)."""
    if len(unit) <= size:
        return [unit] if unit else []
    pieces, current = [], ""
    for word in unit.split():
        while len(word) > size:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:size])
            word = word[size:]
        if current and len(current) + 1 + len(word) > size:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return pieces


def _tail(text: str, overlap: int) -> str:
    """The last ``overlap`` characters of ``text`` or fewer, starting at a word."""
    if overlap <= 0:
        return ""
    if len(text) <= overlap:
        return text
    tail = text[-overlap:]
    if not text[-overlap - 1].isspace():  # mid-word: start at the next word
        cut = re.search(r"\s+", tail)
        tail = tail[cut.end():] if cut else ""
    return tail.strip()


def split_text(text: str, chunk_size: int, chunk_overlap: int = 0) -> list[str]:
    """``text`` as windows of at most ``chunk_size`` characters (see the module docstring)."""
    check_sizes(chunk_size, chunk_overlap)
    chunks: list[str] = []
    current = ""
    for joiner, piece in _pieces(text, chunk_size):
        if current and len(current) + len(joiner) + len(piece) > chunk_size:
            chunks.append(current)
            tail = _tail(current, chunk_overlap)
            current = f"{tail} {piece}" if tail and len(tail) + 1 + len(piece) <= chunk_size else piece
        else:
            current = f"{current}{joiner}{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def markdown_sections(text: str) -> list[tuple[str, str]]:
    """``(heading path, section text)`` of a Markdown document, in order; the text before the
    first heading has the path ``""``. A section's text starts with its heading line."""
    sections: list[tuple[str, str]] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    fenced = False

    def close() -> None:
        body = "\n".join(lines).strip()
        if body:
            sections.append((" > ".join(title for _, title in path), body))

    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        m = None if fenced else _HEADING.match(line)
        if m is not None:
            close()
            lines = []
            level = len(m.group(1))
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, m.group(2).strip()))
        lines.append(line)
    close()
    return sections


def chunk_text(text: str, chunk_size: int, chunk_overlap: int, metadata: dict[str, str] | None = None) -> list[Chunk]:
    """Plain text as chunks, each with ``metadata``."""
    return [Chunk(i, t, dict(metadata or {})) for i, t in enumerate(split_text(text, chunk_size, chunk_overlap))]


def chunk_markdown(text: str, chunk_size: int, chunk_overlap: int,
                   metadata: dict[str, str] | None = None) -> list[Chunk]:
    """Markdown as chunks: sections first, each chunk's metadata ``section`` its heading path."""
    chunks: list[Chunk] = []
    for section, body in markdown_sections(text):
        for piece in split_text(body, chunk_size, chunk_overlap):
            meta = dict(metadata or {})
            if section:
                meta["section"] = section
            chunks.append(Chunk(len(chunks), piece, meta))
    return chunks


def _metadata_value(value: Any) -> str | None:
    """A JSONL field as a metadata string; ``None`` for what is not a scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return orjson.dumps(value).decode()
    if isinstance(value, str):
        return value
    return None


def chunk_jsonl(text: str, name: str, chunk_size: int, chunk_overlap: int, text_field: str = "text",
                metadata: dict[str, str] | None = None) -> list[Document]:
    """A JSONL file (``name`` for ids and errors) as documents, one a line (see the module docstring)."""
    documents: list[Document] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ChunkingError(f"{name}:{number}: not a JSON object") from None
        if not isinstance(obj, dict):
            raise ChunkingError(f"{name}:{number}: not a JSON object")
        body = obj.get(text_field)
        if not isinstance(body, str):
            raise ChunkingError(f"{name}:{number}: no string field {text_field!r} (the text to index; "
                                "--text-field names another)")
        raw_id = obj.get("id")
        doc_id = str(raw_id) if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) and str(raw_id) \
            else f"{name}:{number}"
        meta = dict(metadata or {})
        for key, value in obj.items():
            if key in (text_field, "id"):
                continue
            as_text = _metadata_value(value)
            if as_text is not None:
                meta[str(key)] = as_text
        documents.append(Document(doc_id, chunk_text(body, chunk_size, chunk_overlap, meta)))
    return documents


def chunk_file(path: str, chunk_size: int, chunk_overlap: int, *, text_field: str = "text",
               metadata: dict[str, str] | None = None) -> list[Document]:
    """The documents of the file at ``path``, by its suffix: Markdown, JSONL, else text (UTF-8).
    A text or Markdown file is one document named by the file's name."""
    check_sizes(chunk_size, chunk_overlap)
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise ChunkingError(f"{path}: not UTF-8 text") from None
    lower = name.lower()
    if lower.endswith(JSONL_SUFFIXES):
        return chunk_jsonl(text, name, chunk_size, chunk_overlap, text_field, metadata)
    if lower.endswith(MARKDOWN_SUFFIXES):
        return [Document(name, chunk_markdown(text, chunk_size, chunk_overlap, metadata))]
    return [Document(name, chunk_text(text, chunk_size, chunk_overlap, metadata))]


__all__ = ["Chunk", "ChunkingError", "Document", "check_sizes", "chunk_file", "chunk_id", "chunk_jsonl",
           "chunk_markdown", "chunk_text", "markdown_sections", "split_text"]
