"""Inserting a batch so that one bad row cannot hold back the others.

The encoder repairs what it can foresee (``facts_repair``); a row the store still refuses (a
value it cannot parse) would fail its whole batch, and a retry would fail the same way forever.
``insert_isolating`` splits a refused batch in halves until the bad rows are alone, inserts the
rest, and reports the bad ones; ``insert_rows`` then writes a stand-in for each refused request
row (``RowBuilder.rejected_row``) so the request still has a row.

Only a refusal of the data splits a batch: a store that is down or overloaded raises on, and the
caller retries the whole batch later. Each sub-batch has its own deduplication token derived
from the batch's (``<token>/<first>-<end>``), and the split is deterministic, so a retry after a
crash half-way inserts nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.telemetry.scrub import scrub_secrets

log = logging.getLogger("gateway.telemetry")

Row = list[Any]
Insert = Callable[[list[Row], str], None]

# ClickHouse error codes that mean "this data cannot be stored" (parsing, types, ranges), as
# opposed to a server that is down, busy or misconfigured.
DATA_ERROR_CODES = frozenset({
    6,  # CANNOT_PARSE_TEXT
    25, 26, 27,  # CANNOT_PARSE_ESCAPE_SEQUENCE, CANNOT_PARSE_QUOTED_STRING, CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32, 33,  # ATTEMPT_TO_READ_AFTER_EOF, CANNOT_READ_ALL_DATA
    38, 41,  # CANNOT_PARSE_DATE, CANNOT_PARSE_DATETIME
    53, 69, 70, 72,  # TYPE_MISMATCH, ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE, CANNOT_PARSE_NUMBER
    117, 131, 190,  # INCORRECT_DATA, TOO_LARGE_STRING_SIZE, SIZES_OF_ARRAYS_DONT_MATCH
    321, 376, 407, 467,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE, CANNOT_PARSE_UUID, DECIMAL_OVERFLOW, CANNOT_PARSE_BOOL
})


def is_rejection(exc: BaseException) -> bool:
    """Whether ``exc`` is the store refusing the data (split the batch) rather than failing
    (retry it whole): a ClickHouse data error, or a row that cannot even be encoded."""
    if isinstance(exc, (TypeError, ValueError)) and not hasattr(exc, "code"):
        return True  # encoding the rows failed (orjson's JSONEncodeError is a TypeError)
    code = getattr(exc, "code", None)
    return isinstance(code, int) and code in DATA_ERROR_CODES


@dataclass
class Isolated:
    """What ``insert_isolating`` did: ``inserted`` rows went in; ``rejected`` are the indices of
    the rows the store refused, ``errors`` its reason for each (scrubbed); ``calls``: inserts tried."""

    inserted: int = 0
    rejected: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    calls: int = 0


def insert_isolating(insert: Insert, rows: list[Row], token: str, *,
                     rejection: Callable[[BaseException], bool] = is_rejection) -> Isolated:
    """Insert ``rows`` with ``insert(rows, token)``; when the store refuses them, halve until each
    refused row is alone. Raises what ``insert`` raised for anything that is not a refusal
    (``rejection(exc)`` false): the caller retries the batch later, with the same ``token``."""
    result = Isolated()
    if rows:
        _insert_range(insert, rows, token, 0, len(rows), result, rejection, top=True)
    return result


def _insert_range(insert: Insert, rows: list[Row], token: str, lo: int, hi: int, result: Isolated,
                  rejection: Callable[[BaseException], bool], top: bool) -> None:
    result.calls += 1
    try:
        insert(rows[lo:hi], token if top else f"{token}/{lo}-{hi}")
    except Exception as exc:
        if not rejection(exc):
            raise
        if hi - lo == 1:
            result.rejected.append(lo)
            result.errors.append(scrub_secrets(f"{type(exc).__name__}: {exc}")[:500])
            return
        mid = (lo + hi) // 2
        _insert_range(insert, rows, token, lo, mid, result, rejection, top=False)
        _insert_range(insert, rows, token, mid, hi, result, rejection, top=False)
        return
    result.inserted += hi - lo


@dataclass
class Inserted:
    """What ``insert_rows`` did: ``inserted`` rows as built, ``stand_ins`` refused rows replaced by
    their stand-in, ``lost`` refused rows with no stand-in (or whose stand-in was refused too)."""

    inserted: int = 0
    stand_ins: int = 0
    lost: int = 0
    errors: list[str] = field(default_factory=list)


def insert_rows(insert: Insert, rows: list[Row], token: str,
                stand_in: Callable[[Row, str], Row] | None = None, *,
                rejection: Callable[[BaseException], bool] = is_rejection) -> Inserted:
    """Insert ``rows`` isolating refused ones (``insert_isolating``); each refused row is replaced
    by ``stand_in(row, reason)`` (``RowBuilder.rejected_row`` for ``llm_requests``; ``None``: no
    stand-in, e.g. ``llm_attempts``) and those go in as one more batch (``<token>/stand-ins``).

    Raises (for the caller to retry the batch whole, same ``token``) when a failure is not a
    refusal, or when the store refuses every row and every stand-in too: a schema that does not
    fit, not a bad row, and nothing is dropped for it.
    """
    first = insert_isolating(insert, rows, token, rejection=rejection)
    out = Inserted(inserted=first.inserted, errors=first.errors)
    if not first.rejected:
        return out
    for error in first.errors:
        log.error("telemetry: the store refused a row of batch %s (%s)", token, error)
    if stand_in is None:
        out.lost = len(first.rejected)
        return out
    stand_ins = [stand_in(rows[i], error) for i, error in zip(first.rejected, first.errors)]
    second = insert_isolating(insert, stand_ins, f"{token}/stand-ins", rejection=rejection)
    if not first.inserted and not second.inserted:
        raise RuntimeError(f"the store refused every row of batch {token} and their stand-ins: {first.errors[0]}")
    out.stand_ins = second.inserted
    out.lost = len(second.rejected)
    return out
