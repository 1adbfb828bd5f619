"""One identity per mailbox: look-alike, quoted, differently normalised and invisible-character addresses are
refused at registration (400 naming ``email``) or collide with the account they imitate (409), and the
imitated staff member's admin login keeps working."""

import io
import json
import unicodedata

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from identity.emails import InvalidEmail, canonical_email, email_key
from identity.models import User
from identity.tests.conftest import PASSWORD, register_body

REGISTER, LOGIN, ADMIN_LOGIN = "/api/v1/users", "/api/v1/auth/login", "/admin/login/"
CYRILLIC_APPLE = "\u0430\u0440\u0440\u04cf\u0435.com"  # "аррӏе.com": every letter Cyrillic
CYRILLIC_APPLE_PUNYCODE = "xn--80ak6aa92e.com"


# --- The two functions -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "stored"), [
    ("  Ada.Obi+news@Example.COM ", "ada.obi+news@example.com"),
    ("o'neil@example.com", "o'neil@example.com"),
    ("ada@b\u00fccher.de", "ada@xn--bcher-kva.de"),  # NFC
    ("ada@bu\u0308cher.de", "ada@xn--bcher-kva.de"),  # NFD: the same address
    ("ada@XN--BCHER-KVA.de", "ada@xn--bcher-kva.de"),
    (f"ada@{CYRILLIC_APPLE}", f"ada@{CYRILLIC_APPLE_PUNYCODE}"),
    ("ada@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com", "ada@example.com"),  # full-width letters
    ("ada@example.com.", "ada@example.com"),
    ("\u212aelvin@example.com", "kelvin@example.com"),  # the Kelvin sign is K once in NFC
])
def test_an_accepted_address_is_stored_in_one_form_that_is_its_own_key(given, stored):
    assert canonical_email(given) == stored
    assert email_key(stored) == stored


@pytest.mark.parametrize(("given", "reason"), [
    ("\u017ftaff@example.com", "ASCII"),  # ſ: PostgreSQL upper-cases it to S
    ("\u0131d@example.com", "ASCII"),  # dotless ı: upper-cases to I
    ('"alice"@example.com', "Quoted"),
    ('"al\\"ice"@example.com', "Quoted"),
    ("al\u200bice@example.com", "invisible"),  # zero-width space
    ("alice\u202e@example.com", "invisible"),  # right-to-left override
    ("ali\x00ce@example.com", "control"),
    ("ali\nce@example.com", "control"),
    ("ali ce@example.com", "space"),
    ("ada@exa\u00admple.com", "invisible"),  # soft hyphen, which IDNA would silently drop
    ("ali\ud800ce@example.com", "control"),  # a lone surrogate, valid in JSON
    ("ada@ex\u0430mple.com", "mixes Latin, Cyrillic"),  # one Cyrillic а among Latin letters
    ("ada@xn--exmple-4nf.com", "mixes Latin, Cyrillic"),  # the same, given as punycode
    ("ada@\u03b1pple.com", "mixes Latin, Cyrillic"),  # Greek alpha
    ("a..b@example.com", "mailbox"),
    (".ab@example.com", "mailbox"),
    ("x" * 65 + "@example.com", "mailbox"),
    ("ada@ex_ample.com", "domain"),
    ("ada@-example.com", "domain"),
    ("ada@localhost", "domain name such as"),
    ("ada@192.0.2.1", "domain name such as"),
    ("ada@[192.0.2.1]", "domain"),
    ("ada", "valid email"),
    ("@example.com", "valid email"),
    ("x" * 10 + "@" + ("a" * 63 + ".") * 3 + "b" * 57 + ".com", "longer than 254"),  # a 253-character domain
])
def test_an_address_without_one_safe_identity_is_refused_with_the_reason(given, reason):
    with pytest.raises(InvalidEmail, match=reason):
        canonical_email(given)


@pytest.mark.parametrize(("spelling", "of"), [
    ("\u017ftaff@example.com", "staff@example.com"),
    ("\u0131d@example.com", "id@example.com"),
    ('"alice"@example.com', "alice@example.com"),
    ("ALICE@EXAMPLE.COM", "alice@example.com"),
    ("al\u200bice@example.com", "alice@example.com"),
    ("\ufeffalice@example.com", "alice@example.com"),
    ("ada@bu\u0308cher.de", "ada@xn--bcher-kva.de"),
    (f"ada@{CYRILLIC_APPLE}", f"ada@{CYRILLIC_APPLE_PUNYCODE}"),
])
def test_the_key_of_every_aliasing_spelling_is_the_key_of_the_address_it_imitates(spelling, of):
    assert email_key(spelling) == email_key(of) == of


def test_the_key_never_raises_whatever_the_string():
    for text in ("", "@", "@@", "a@", "\ud800", "a@\ud800.com", "a@" + "x" * 300, '"', "a@-.-", "\x00@\x00"):
        assert isinstance(email_key(text), str)


# --- Registration through the API (400 with the field, or 409: the same identity) ------------------------

def register(api_client, email):
    # json.dumps escapes a lone surrogate ("\\ud800"), as a hostile client may send it.
    return api_client.post(REGISTER, json.dumps(register_body(email=email)), content_type="application/json")


@pytest.mark.django_db
@pytest.mark.parametrize("email", [
    "\u017ftaff@example.com", "\u0131d@example.com", '"alice"@example.com', "al\u200bice@example.com",
    "alice\u202e@example.com", "ali\x07ce@example.com", "ada@ex\u0430mple.com", "ali\ud800ce@example.com",
])
def test_registering_a_refused_address_answers_400_naming_email(api_client, email):
    response = register(api_client, email)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error" and list(error["fields"]) == ["email"]
    assert not User.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("first", "second"), [
    ("ada@b\u00fccher.de", "ada@bu\u0308cher.de"),  # NFC, then NFD
    (f"ada@{CYRILLIC_APPLE}", f"ada@{CYRILLIC_APPLE_PUNYCODE}"),  # a Cyrillic domain, then its punycode
    (f"ada@{CYRILLIC_APPLE_PUNYCODE}", f"ADA@{CYRILLIC_APPLE.upper()}"),
    ("ada@example.com", "ADA@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com"),
])
def test_two_spellings_of_one_address_are_one_identity(api_client, first, second):
    created = register(api_client, first)
    assert created.status_code == 201, created.content
    taken = register(api_client, second)
    assert taken.status_code == 409, taken.content
    assert taken.json()["error"]["code"] == "email_taken" and list(taken.json()["error"]["fields"]) == ["email"]
    assert User.objects.count() == 1
    assert User.objects.get().email == created.json()["email"] == canonical_email(first)


@pytest.mark.django_db
def test_a_look_alike_of_a_staff_address_cannot_block_the_staff_admin_login(api_client, client, make_person):
    staff = make_person(staff=True, email="staff@example.com").user
    for impostor in ("\u017ftaff@example.com", "Staff@EXAMPLE.com", '"staff"@example.com'):
        assert register(api_client, impostor).status_code in (400, 409)
    # Not even a row written behind the API's back: the unique key is the database's own word.
    for impostor in ("\u017ftaff@example.com", "STAFF@example.com", "st\u200baff@example.com"):
        with pytest.raises(IntegrityError), transaction.atomic():
            User.objects.create(email=impostor, password="!")
    assert User.objects.count() == 1
    assert User.objects.get_by_natural_key("\u017fTAFF@example.com") == staff

    response = client.post(ADMIN_LOGIN, {"username": "staff@example.com", "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_logging_in_with_an_aliasing_spelling_finds_the_one_account_and_the_password_decides(api_client, person):
    local, domain = person.user.email.split("@")
    for spelling in (f'"{local}"@{domain}'.upper(), f"{local}\u200b@{domain}"):
        response = api_client.post(LOGIN, {"email": spelling, "password": PASSWORD}, format="json")
        assert response.status_code == 200 and response.json()["user"]["id"] == str(person.pk)
    wrong = api_client.post(LOGIN, {"email": f'"{local}"@{domain}', "password": "wrong-password-1"}, format="json")
    assert wrong.status_code == 401


@pytest.mark.django_db
def test_a_transfer_to_an_aliasing_email_is_refused_not_sent_elsewhere(client_for, person):
    response = client_for(person.user).post("/api/v1/transfers", {"to_email": '"bola"@example.com', "amount": "1"},
                                            format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["to_email"]


@pytest.mark.django_db
def test_createsuperuser_refuses_an_address_without_a_canonical_form_with_the_reason(monkeypatch):
    # It ended in a traceback from create_user (InvalidEmail), leaving the operator to read it.
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    with pytest.raises(CommandError, match="non-ASCII mailbox names are not accepted"):
        call_command("createsuperuser", "--noinput", "--email", "\u017ftaff@example.com", stdout=io.StringIO())
    assert not User.objects.exists()
    call_command("createsuperuser", "--noinput", "--email", "Staff@Example.com", stdout=io.StringIO())
    assert User.objects.get().email == "staff@example.com"


def test_nfc_and_nfd_inputs_differ_as_strings_but_not_as_addresses():
    nfc, nfd = "ada@b\u00fccher.de", unicodedata.normalize("NFD", "ada@b\u00fccher.de")
    assert nfc != nfd and canonical_email(nfc) == canonical_email(nfd)
