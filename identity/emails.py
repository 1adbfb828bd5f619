"""One identity per mailbox: the canonical form of an email address and the key that makes it unique.

Two functions, used by every path that takes an email (registration, the API login, the admin login, the login
lockout, transfers by email, the user manager):

- :func:`canonical_email` validates an address given for a *new* identity and returns the form stored in
  ``User.email``, or raises :class:`InvalidEmail` with a message for the client. It accepts only what has one
  obvious identity:

  * NFC first; any control, format (zero-width, bidi), private-use, unassigned, surrogate or space character
    inside the address is refused, never silently dropped.
  * The part before ``@`` must be an RFC 5322 dot-atom of ASCII characters (``alice.o+news``), lower-cased.
    Quoted local parts (``"alice"@…``) are refused: they name the same mailbox as the unquoted form. Non-ASCII
    local parts are refused too: Python, PostgreSQL and mail servers disagree on how letters such as ``ſ``
    (U+017F, upper-cases to ``S``), ``ı`` (U+0131, to ``I``) or the Kelvin sign compare, so such an address
    cannot be given one safe identity (PostgreSQL's ``UPPER()`` made ``ſtaff@`` equal to ``staff@``).
  * The domain is stored in its IDNA A-label form (``bücher.de`` → ``xn--bcher-kva.de``, UTS #46 mapping), so an
    internationalised domain and its punycode are one identity, and the admin shows a look-alike domain as the
    ``xn--`` string it is. A label mixing Latin, Cyrillic or Greek letters (``exаmple.com`` with a Cyrillic
    ``а``), the classic homograph, is refused, as browsers' IDN display policies do.

- :func:`email_key` maps *any* string to the key stored in the unique ``User.email_canonical`` column and used
  for every lookup. It never raises. For a canonical address the key is the address itself; for anything else
  (a login attempt, rows stored before this rule existed) it folds what could alias: NFKC, invisible
  characters dropped, quotes around the local part removed, letters case-folded the way PostgreSQL's ``UPPER``
  and Python's ``casefold`` would both see them, the domain in its A-label form. So ``ſtaff@example.com``
  typed at a login finds ``staff@example.com`` (the password still decides) and counts towards that address's
  lockout, and a migration can find old rows that alias one another.
"""

from __future__ import annotations

import re
import unicodedata

import idna

MAX_LENGTH = 254  # RFC 5321's path limit minus the angle brackets
MAX_LOCAL_LENGTH = 64
# RFC 5322 atext; a dot-atom is atext runs joined by single dots.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# Unicode general categories that must never be part of an address: controls, format characters (zero-width,
# bidi overrides, soft hyphen), surrogates, private use, unassigned, and separators (spaces, line breaks).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
# Scripts whose letters are confusable with one another; one label may use only one of them.
_CONFUSABLE_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK"})


class InvalidEmail(ValueError):
    """The address cannot be an identity; ``str(exc)`` is the message for the client."""


def _is_refused(char: str) -> bool:
    return unicodedata.category(char) in _REFUSED_CATEGORIES


def _script(char: str) -> str:
    # The Unicode character name starts with the script for letters ("CYRILLIC SMALL LETTER A"); enough to tell
    # the three confusable scripts apart without a script-property table.
    return unicodedata.name(char, "").split(" ", 1)[0]


def _a_label_domain(domain: str) -> str:
    """The domain's IDNA A-label form (UTS #46 mapping, lower case, no trailing dot); raises ``idna.IDNAError``
    or ``UnicodeError`` when it is not a valid domain name."""
    a_label = idna.encode(domain.rstrip("."), uts46=True, transitional=False).decode("ascii").lower()
    idna.decode(a_label)  # an "xn--" label given directly must decode to a valid U-label
    return a_label


def canonical_email(value: str) -> str:
    """The stored form of an address for a new identity (see the module docstring); raises InvalidEmail."""
    text = unicodedata.normalize("NFC", value.strip())
    if any(_is_refused(char) for char in text):
        raise InvalidEmail("The address contains control, invisible or space characters.")
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise InvalidEmail("Enter a valid email address.")
    if '"' in local:
        raise InvalidEmail('Quoted addresses ("…"@) are not accepted: write the address without quotes.')
    if not local.isascii():
        raise InvalidEmail("The part before @ must be ASCII (letters, digits and . _ + - ' and the like); "
                           "non-ASCII mailbox names are not accepted.")
    if len(local) > MAX_LOCAL_LENGTH or not _DOT_ATOM.fullmatch(local):
        raise InvalidEmail("The part before @ is not a valid mailbox name.")
    try:
        domain = _a_label_domain(domain)
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidEmail("The part after @ is not a valid domain name.") from exc
    labels = domain.split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        raise InvalidEmail("The part after @ must be a domain name such as example.com.")
    for label in idna.decode(domain).split("."):
        if len(_CONFUSABLE_SCRIPTS & {_script(char) for char in label if char.isalpha()}) > 1:
            raise InvalidEmail("The domain mixes Latin, Cyrillic or Greek letters in one label, as look-alikes "
                               "of other domains do.")
    address = f"{local.lower()}@{domain}"
    if len(address) > MAX_LENGTH:
        raise InvalidEmail(f"The address is longer than {MAX_LENGTH} characters.")
    return address


def validate_identity_email(value: str) -> None:
    """A model and form validator: the address must have a canonical form (:func:`canonical_email`), so that
    ``createsuperuser`` and the admin's forms refuse it with the reason instead of failing in ``create_user``."""
    from django.core.exceptions import ValidationError

    try:
        canonical_email(value)
    except InvalidEmail as exc:
        raise ValidationError(str(exc), code="invalid_email") from None


def _fold(text: str) -> str:
    # upper() first: PostgreSQL's UPPER and Python agree that ſ→S and ı→I, which casefold() alone keeps apart.
    return unicodedata.normalize("NFC", text.upper().casefold())


def email_key(value: str) -> str:
    """The unique key of any string given as an email (see the module docstring); never raises.

    ``email_key(canonical_email(x)) == canonical_email(x)``.
    """
    text = "".join(char for char in unicodedata.normalize("NFKC", value) if not _is_refused(char))
    local, at, domain = text.strip().rpartition("@")
    if not at:
        return _fold(text.strip())
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = re.sub(r"\\(.)", r"\1", local[1:-1])  # "a\"b" is the mailbox a"b
    try:
        domain = _a_label_domain(domain)
    except (idna.IDNAError, UnicodeError):
        domain = _fold(domain.rstrip("."))
    return f"{_fold(local)}@{domain}"
