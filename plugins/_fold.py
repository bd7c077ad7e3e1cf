"""The normalised copy of a text that policy plugins match on.

A block list or a PII matcher that reads the text as sent is bypassed by characters a reader
does not see or does not tell apart: a zero-width space or a soft hyphen inside a word, a
combining mark on each letter, fullwidth letters, a Cyrillic ``е`` for a Latin ``e``. ``fold``
maps each character to what it stands for:

- compatibility forms become their plain letters (Unicode NFKD: fullwidth ``Ｓ`` → ``S``,
  ligatures, superscripts, the no-break space → a space), and digits of any script become
  ASCII digits;
- format characters (zero-width space/joiners, word joiner, soft hyphen, BOM, bidi controls),
  combining marks (accents included: ``é`` → ``e``) and the Hangul fillers, letters that show
  as nothing, are dropped;
- Cyrillic and Greek letters that look like Latin ones, and dash-like characters, are mapped to
  their ASCII look-alikes (``CONFUSABLES``);
- optionally the result is case-folded.

An invisible character can also stand where a space should be (``project\u200bnightingale``
reads as two words to a model): ``space_invisibles`` puts a space in place of each
(``INVISIBLE``: Unicode's default-ignorable characters) for a second look.

``fold`` works character by character through ``str.translate`` with a table filled on first
sight of each character, so a text costs one C-level pass; ASCII text skips it entirely.
``fold_offsets`` also returns, for each character of the folded text, the index of the
character of the original it came from, so a match in the folded copy can be masked in the
original (which is otherwise forwarded untouched).
"""

from __future__ import annotations

import re
import unicodedata

# Look-alikes of Latin letters (upper and lower case), of the ASCII hyphen and of the dot.
CONFUSABLES = {
    # Cyrillic
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
    "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ј": "J", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Һ": "H",
    "а": "a", "е": "e", "к": "k", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "ѕ": "s", "і": "i",
    "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l",
    # Latin letters that read as plain ones
    "ı": "i", "ɡ": "g",
    # Greek
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    "α": "a", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
    # the ideographic full stop, which IDNA (browsers, mail clients) reads as a dot in domain names
    "\u3002": ".",
    # dashes and minus signs
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-", "﹣": "-", "－": "-",
}
_DROP = frozenset({"Cf", "Mn", "Me"})  # format characters and combining marks
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")  # Hangul fillers: letters (Lo) that show as nothing
# Unicode's Default_Ignorable_Code_Point characters: shown as nothing, whatever their category.
INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                       "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
                       "\U000e0000-\U000e0fff]+")
_TABLE_MAX = 65536  # characters remembered per table; rarer ones are folded on each sight
_SEPARATORS = re.compile(r"[\W_]+")
_ASCII_SEPARATORS = str.maketrans({c: " " for c in map(chr, range(128)) if not c.isalnum()})


def _fold_char(ch: str, casefold: bool) -> str:
    out = []
    for c in unicodedata.normalize("NFKD", ch):
        if unicodedata.category(c) in _DROP or c in _FILLERS:
            continue
        c = CONFUSABLES.get(c, c)
        if c > "\x7f" and c.isdecimal():
            c = str(unicodedata.decimal(c))
        out.append(c)
    text = "".join(out)
    return text.casefold() if casefold else text


class _FoldTable(dict):
    """``ord(char)`` → folded text, for ``str.translate``; filled on first sight."""

    def __init__(self, casefold: bool):
        super().__init__()
        self.casefold = casefold

    def __missing__(self, code: int) -> str:
        value = _fold_char(chr(code), self.casefold)
        if len(self) < _TABLE_MAX:
            self[code] = value
        return value


_TABLES = {True: _FoldTable(True), False: _FoldTable(False)}


def fold(text: str, casefold: bool = True) -> str:
    """``text`` with look-alike, invisible and decorated characters reduced (see the module
    doc); the same length as ``text`` for ASCII input."""
    if text.isascii():
        return text.lower() if casefold else text
    return text.translate(_TABLES[casefold])


def fold_offsets(text: str, casefold: bool = False) -> tuple[str, list[int]]:
    """``(fold(text), starts)``: ``starts[j]`` is the index in ``text`` of the character that
    produced character ``j`` of the folded text."""
    table = _TABLES[casefold]
    pieces: list[str] = []
    starts: list[int] = []
    for i, ch in enumerate(text):
        f = (ch.lower() if casefold else ch) if ch < "\x80" else table[ord(ch)]
        if f:
            pieces.append(f)
            starts.extend([i] * len(f))
    return "".join(pieces), starts


def original_span(text: str, starts: list[int], begin: int, end: int) -> tuple[int, int]:
    """The span of ``text`` behind the folded span ``[begin, end)`` (``starts`` from
    ``fold_offsets``); characters dropped inside or right after it belong to it."""
    last = starts[end - 1] + 1
    stop = starts[end] if end < len(starts) else len(text)
    return starts[begin], max(last, stop)


def space_invisibles(text: str) -> str | None:
    """``text`` with a space in place of each run of invisible characters, or ``None`` when it
    has none."""
    if text.isascii() or INVISIBLE.search(text) is None:
        return None
    return INVISIBLE.sub(" ", text)


def squeeze_spaces(folded: str) -> str:
    """Runs of whitespace (any kind) as one space, none at the ends."""
    return " ".join(folded.split())


def words_only(folded: str) -> str:
    """Runs of whitespace, punctuation and underscores as one space, none at the ends: only the
    words remain."""
    spaced = folded.translate(_ASCII_SEPARATORS)
    if spaced.isascii():
        return " ".join(spaced.split())
    return _SEPARATORS.sub(" ", folded).strip()
