"""Text for a terminal: sender-controlled strings with their control sequences neutralised.

Message texts, subjects, case ids, rejection details and every other string
an office (or the gateway on its behalf) put on the wire reach an operator's
terminal through `liaison inbox`, `case`, `status` and `audit`. An escape
sequence in them could retitle the window, rewrite earlier lines, hide a
line or, on some terminals, answer back into the shell. ``printable`` shows
each such character as a visible escape (``\\x1b``, ``\\u202e``) instead;
``echo`` prints a line through it. JSON output needs neither: ``json.dumps``
already escapes every control character.

What it does not: decide what is printed, or change the JSON.
"""

from __future__ import annotations

import sys
import unicodedata
from typing import Final, TextIO

__all__ = ["echo", "printable"]

# Unicode categories a terminal may act on: controls (C0, DEL, C1), format characters
# (bidi overrides and isolates, zero-width joiners), line/paragraph separators, and
# unassigned/private/surrogate code points a terminal may misread.
_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cn", "Cs"})


def _escaped(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(value: object) -> str:
    """``str(value)`` with every control, format or separator character shown as an escape."""
    text = str(value)
    if text.isprintable() and text.isascii():
        return text  # the common case: nothing to do
    return "".join(_escaped(c) if unicodedata.category(c) in _UNSAFE_CATEGORIES else c for c in text)


def echo(line: object = "", *, file: TextIO | None = None, flush: bool = False) -> None:
    """Print one line of human output, neutralised (a newline inside ``line`` is shown, not obeyed)."""
    print(printable(line), file=file or sys.stdout, flush=flush)
