"""`liaison.terminal.printable`: what a hostile sender's text becomes on an operator's terminal."""

from __future__ import annotations

import pytest

from liaison.terminal import printable

NEUTRALISED = {
    "csi-clear": ("a\x1b[2Jb", "a\\x1b[2Jb"),
    "osc-title": ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),
    "carriage-return": ("ok\rEVIL", "ok\\x0dEVIL"),
    "newline": ("line\nforged", "line\\x0aforged"),
    "c1-csi": ("\x9b31m", "\\x9b31m"),
    "delete": ("a\x7fb", "a\\x7fb"),
    "bidi-override": ("\u202eevil", "\\u202eevil"),
    "bidi-isolate": ("\u2066x\u2069", "\\u2066x\\u2069"),
    "zero-width-joiner": ("a\u200db", "a\\u200db"),
    "line-separator": ("a\u2028b", "a\\u2028b"),
}
KEPT = ["plain ascii 123", "Душанбе — Москва", "案件 ١٢٣", "tab-free, spaced   text", ""]


@pytest.mark.parametrize("case", list(NEUTRALISED))
def test_control_sequences_are_shown_not_obeyed(case: str) -> None:
    raw, shown = NEUTRALISED[case]
    assert printable(raw) == shown
    assert printable(raw).isprintable()


@pytest.mark.parametrize("text", KEPT)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert printable(text) == text
