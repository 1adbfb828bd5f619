"""Free text from clients and staff (names, remarks, reasons): printable, no hidden direction, not invisible.

Refused, with a field error:
- C0 and C1 control characters (U+0000–U+001F, U+007F–U+009F); multi-line fields allow line breaks only;
- bidirectional overrides, embeddings, isolates and marks (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F,
  U+061C): they make a name or a remark display differently from what it is ("Trojan Source");
- values made only of invisible characters (format characters such as zero-width spaces and joiners, fillers,
  whitespace): a name that looks empty. Zero-width joiners *inside* visible text stay allowed (they are part
  of the spelling of words in Persian or the Indic scripts).
"""

from __future__ import annotations

import re
import unicodedata

from django.core.exceptions import ValidationError

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINE_BREAKS = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
# Letters and symbols that render as nothing (Hangul fillers, Braille blank, Khmer vowel-inherent signs).
_BLANK_LOOKING = frozenset("\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5")


def _invisible(char: str) -> bool:
    return char.isspace() or char in _BLANK_LOOKING or unicodedata.category(char) in {"Cf", "Zs", "Mn", "Me"}


def validate_plain_text(value: str, *, multiline: bool = False) -> str:
    """``value`` if it is clean text (see the module doc), else a Django ``ValidationError`` naming the problem."""
    if (_CONTROL_BUT_LINE_BREAKS if multiline else _CONTROL).search(value):
        raise ValidationError("Must not contain control characters.", code="control_characters")
    if _BIDI.search(value):
        raise ValidationError("Must not contain bidirectional override, isolate or mark characters.",
                              code="bidi_characters")
    if value and all(_invisible(char) for char in value):
        raise ValidationError("Must contain visible characters.", code="invisible")
    return value


def validate_multiline_text(value: str) -> str:
    return validate_plain_text(value, multiline=True)
