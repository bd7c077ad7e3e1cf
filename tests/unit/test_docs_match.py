"""The user docs match the product: every telemetry column is documented, shell examples work.

The column lists come from the schema itself (the DDL every migration runs), so a column added
later fails here until docs/telemetry.md gains a row for it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.telemetry.schema import SchemaOptions, ddl_script

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_SHELL = {"bash", "sh", "shell", "console", "zsh"}


def schema_columns(table: str) -> set[str]:
    """Column names of ``table`` after every migration: its CREATE TABLE plus each ADD COLUMN."""
    ddl = ddl_script(SchemaOptions())
    create = re.search(rf"CREATE TABLE IF NOT EXISTS `default`\.`{table}`\n\((.*?)\n\)", ddl, re.S)
    assert create, f"no CREATE TABLE for {table}"
    columns = set(re.findall(r"^\s+`(\w+)` ", create.group(1), re.M))
    columns |= set(re.findall(rf"ALTER TABLE `default`\.`{table}` ADD COLUMN IF NOT EXISTS `(\w+)`", ddl))
    return columns


def documented_columns(text: str, table: str) -> set[str]:
    """Names in the first cell of the column table under the heading that names ``table``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and f"`{table}`" in line)
    names: set[str] = set()
    in_table = False
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("| column "):
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                break
            names |= set(re.findall(r"`(\w+)`", line.split("|")[1]))
    return names


@pytest.mark.parametrize("table", ["llm_requests", "llm_attempts"])
def test_telemetry_doc_lists_every_column(table):
    in_schema = schema_columns(table)
    in_doc = documented_columns((REPO / "docs" / "telemetry.md").read_text(), table)
    assert in_schema >= {"request_id", "ts_start", "backend"}  # the parser found the table
    assert not in_schema - in_doc, f"docs/telemetry.md lacks rows for {table} columns {sorted(in_schema - in_doc)}"
    assert not in_doc - in_schema, f"docs/telemetry.md documents {table} columns that do not exist: " \
                                   f"{sorted(in_doc - in_schema)}"


def shell_lines(text: str):
    """``(line number, line)`` of shell code blocks, and of any line running ``curl``."""
    lang = None
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^\s*```(\w*)", line)
        if fence:
            lang = None if lang is not None else fence.group(1).lower()
            continue
        if lang is not None and (lang in _SHELL or re.search(r"\bcurl\s", line)):
            yield number, line


def test_shell_examples_expand_variables():
    """``'Bearer $KEY'`` sends the text ``$KEY``: variables belong in double quotes."""
    wrong = []
    for path in DOCS:
        for number, line in shell_lines(path.read_text()):
            for quoted in re.findall(r"'([^']*)'", line):
                if re.search(r"\$\{?[A-Z_][A-Z0-9_]*", quoted):
                    wrong.append(f"{path.relative_to(REPO)}:{number}: '{quoted}'")
    assert not wrong, "single quotes keep these variables from expanding:\n" + "\n".join(wrong)


def test_the_quoting_check_sees_a_bad_example():
    bad = "```bash\ncurl -H 'Authorization: Bearer $KEY' http://x\n```\n"
    assert [q for _, line in shell_lines(bad) for q in re.findall(r"'([^']*)'", line)] == ["Authorization: Bearer $KEY"]
