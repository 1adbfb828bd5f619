"""Free text is printable, has no hidden direction and is not invisible: the rule and where it applies."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError

from gxbackend.text import validate_multiline_text, validate_plain_text
from identity.tests.conftest import register_body

BAD = {
    "NUL": "Ada\x00", "escape": "Ada\x1b[31m", "newline": "Ada\nObi", "tab": "Ada\tObi", "DEL": "Ada\x7f",
    "C1 NEL": "Ada\x85", "C1 CSI": "Ada\x9b", "RLO override": "Ada\u202eibO", "LRE embedding": "\u202aAda",
    "RLI isolate": "Ada\u2067x\u2069", "RLM mark": "Ada\u200f", "Arabic letter mark": "Ada\u061c",
    "zero-width space only": "\u200b", "zero-width joiners only": "\u200d\u200c\u200d", "BOM only": "\ufeff",
    "Hangul filler only": "\u3164", "word joiner and spaces": " \u2060 ", "soft hyphen only": "\u00ad",
}
GOOD = {"plain": "Ada", "accents": "Adaéze Ọbị", "Persian with ZWNJ": "می\u200cخواهم", "Devanagari with ZWJ":
        "क्\u200dष", "CJK": "李小龍", "apostrophe and hyphen": "O'Neil-Smith", "emoji with ZWJ": "👩\u200d💻"}


@pytest.mark.parametrize("value", BAD.values(), ids=BAD.keys())
def test_control_bidi_and_invisible_only_text_is_refused(value):
    with pytest.raises(ValidationError):
        validate_plain_text(value)


@pytest.mark.parametrize("value", GOOD.values(), ids=GOOD.keys())
def test_ordinary_text_in_any_script_passes(value):
    assert validate_plain_text(value) == value


def test_multiline_text_allows_line_breaks_and_nothing_else():
    assert validate_multiline_text("Blurred photo.\r\nPlease upload again.") == "Blurred photo.\r\nPlease upload again."
    for bad in ("tab\there", "bell\x07", "\u202e"):
        with pytest.raises(ValidationError):
            validate_multiline_text(bad)


# --- where it applies -----------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("field", ["first_name", "last_name"])
@pytest.mark.parametrize("value", [BAD["RLO override"], BAD["zero-width space only"], BAD["escape"]],
                         ids=["bidi", "zero-width", "control"])
def test_registration_refuses_such_names_with_a_field_error(api_client, field, value):
    response = api_client.post("/api/v1/users", register_body(**{field: value}), format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


@pytest.mark.django_db
def test_a_profile_edit_refuses_an_invisible_name(client_for, person):
    response = client_for(person.user).patch("/api/v1/users/me", {"last_name": "\u200b\u200d"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"last_name": ["Must contain visible characters."]}


@pytest.mark.django_db
@pytest.mark.parametrize("remark", [BAD["RLO override"], BAD["newline"], BAD["zero-width joiners only"]])
def test_a_transfer_remark_is_refused_with_a_field_error(client_for, person, remark):
    body = {"to_email": "someone@example.com", "amount": "1", "remark": remark}
    response = client_for(person.user).post("/api/v1/transfers", body, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["remark"]


@pytest.mark.django_db
def test_the_admins_freeze_reason_is_refused_with_a_form_error(client, django_user_model, make_person):
    from projector.models import Wallet

    operator = django_user_model.objects.create_superuser("ops@example.com", "ops-password-123")
    client.force_login(operator)
    holder = make_person().user
    Wallet.objects.create(user=holder, balance_qirat=1)
    response = client.post("/admin/projector/wallet/", {"action": "freeze_selected", ACTION_CHECKBOX_NAME:
                                                        [str(holder.pk)], "apply": "1", "reason": "fraud\u202e"})
    assert response.status_code == 200  # the reason page again, with the error
    assert "Must not contain bidirectional" in response.content.decode()
    assert not Wallet.objects.get(user=holder).frozen
