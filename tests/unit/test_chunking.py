"""Chunking of retrieval documents: windows within the size, overlaps at word starts, Markdown
sections with their heading paths, JSONL lines as documents, stable chunk ids."""

from __future__ import annotations

import pytest

from gateway.retrieval.chunking import (
    ChunkingError,
    check_sizes,
    chunk_file,
    chunk_id,
    chunk_jsonl,
    chunk_markdown,
    markdown_sections,
    split_text,
)


def test_paragraphs_pack_into_windows_within_the_size():
    text = "First paragraph here.\n\nSecond one.\n\n\nThird paragraph is a little longer than that."
    assert split_text(text, 1000) == ["First paragraph here.\n\nSecond one.\n\nThird paragraph is a little longer than that."]
    chunks = split_text(text, 40)
    assert all(len(c) <= 40 for c in chunks)
    assert chunks[0] == "First paragraph here.\n\nSecond one."
    assert " ".join(chunks).count("Third") == 1


def test_long_paragraphs_split_at_sentences_then_words_and_overlap_starts_at_a_word():
    sentences = [f"Sentence number {i} talks about topic{i}." for i in range(30)]
    text = " ".join(sentences)
    chunks = split_text(text, 120, 30)
    assert len(chunks) > 5 and all(len(c) <= 120 for c in chunks)
    words = set(text.split())
    for before, after in zip(chunks, chunks[1:]):
        assert after.split()[0] in words  # never a word cut in half
        head = after.split()[0]
        assert head in before.split()[-6:] or head == "Sentence"  # the overlap repeats the end of the window before
    assert "topic29." in chunks[-1] and "topic0." in chunks[0]
    # no overlap: the windows put together hold every word once
    plain = split_text(text, 120, 0)
    assert " ".join(plain).split() == text.split()
    # a word longer than a window is cut
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_sizes_are_checked():
    check_sizes(10, 9)
    for size, overlap in ((0, 0), (10, 10), (10, -1)):
        with pytest.raises(ValueError):
            check_sizes(size, overlap)


MARKDOWN = """Intro before any heading.

# Install

Run the installer.

## Linux

Use the package manager.

```sh
# not a heading: inside a fence
apt install thing
```

## Windows

Run setup.exe.

# Usage

Call it.
"""


def test_markdown_splits_at_headings_and_keeps_the_heading_path():
    sections = markdown_sections(MARKDOWN)
    assert [s for s, _ in sections] == ["", "Install", "Install > Linux", "Install > Windows", "Usage"]
    linux = dict(sections)["Install > Linux"]
    assert linux.startswith("## Linux") and "# not a heading: inside a fence" in linux
    chunks = chunk_markdown(MARKDOWN, 200, 20, {"source": "manual"})
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].metadata == {"source": "manual"}
    assert chunks[2].metadata == {"source": "manual", "section": "Install > Linux"}
    assert "apt install thing" in chunks[2].text


def test_jsonl_lines_are_documents_with_ids_and_scalar_metadata():
    text = ('{"id": "faq-1", "text": "How do I reset my password?", "lang": "en", "votes": 3, "ok": true, '
            '"tags": ["a"]}\n\n{"body": "Wie setze ich mein Passwort zurueck?", "lang": "de"}\n')
    docs = chunk_jsonl(text.splitlines()[0], "faq.jsonl", 100, 10)
    assert docs[0].doc_id == "faq-1"
    assert docs[0].chunks[0].metadata == {"lang": "en", "votes": "3", "ok": "true"}  # the list is no metadata
    with pytest.raises(ChunkingError, match=r"faq.jsonl:3: no string field 'text'"):
        chunk_jsonl(text, "faq.jsonl", 100, 10)  # line 3 has no "text"
    text = text.replace('"text"', '"body"')
    docs = chunk_jsonl(text, "faq.jsonl", 100, 10, text_field="body")
    assert [d.doc_id for d in docs] == ["faq-1", "faq.jsonl:3"] and docs[1].chunks[0].metadata == {"lang": "de"}
    with pytest.raises(ChunkingError, match="faq.jsonl:1: not a JSON object"):
        chunk_jsonl("[1, 2]\n", "faq.jsonl", 100, 10)


def test_files_by_suffix_and_stable_ids(tmp_path):
    (tmp_path / "notes.txt").write_text("Plain words here.")
    (tmp_path / "guide.md").write_text("# Title\n\nBody text.")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    [txt] = chunk_file(str(tmp_path / "notes.txt"), 100, 10, metadata={"k": "v"})
    assert txt.doc_id == "notes.txt" and txt.chunks[0].text == "Plain words here." and txt.chunks[0].metadata == {"k": "v"}
    [md] = chunk_file(str(tmp_path / "guide.md"), 100, 10)
    assert md.chunks[0].metadata == {"section": "Title"}
    with pytest.raises(ChunkingError, match="not UTF-8"):
        chunk_file(str(tmp_path / "bin.txt"), 100, 10)
    assert chunk_id("docs", "a.txt", 0) == chunk_id("docs", "a.txt", 0)
    assert len({chunk_id("docs", "a.txt", 0), chunk_id("docs", "a.txt", 1), chunk_id("other", "a.txt", 0)}) == 3
    assert len(chunk_id("docs", "a.txt", 0)) == 32
