"""Admin helpers shared by the apps' ModelAdmins."""

from __future__ import annotations

from collections.abc import Iterable

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse


def reason_form_page(
    model_admin: admin.ModelAdmin, request: HttpRequest, *, objects: Iterable[Model], lines: Iterable[str],
    form: forms.Form, action_name: str, verb: str, question: str,
) -> HttpResponse:
    """The intermediate page of a list action that needs a reason (reject KYC, freeze a wallet).

    It lists the selected objects, shows ``form`` and posts back to the same action with ``apply=1``; the
    action validates the form and acts, or renders this page again with the form's errors.
    """
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"{verb} {model_admin.model._meta.verbose_name_plural}",
        "opts": model_admin.model._meta,
        "objects": list(objects),
        "lines": list(lines),
        "form": form,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action_name": action_name,
        "verb": verb,
        "slug": verb.lower(),
        "question": question,
    }
    return TemplateResponse(request, "admin/gx_reason_action.html", context)
