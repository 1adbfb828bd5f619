"""Wallets in the Django admin: search by email, and Freeze / Unfreeze as list actions (docs/DESIGN.md §2, flow 6).

Both actions go through :mod:`projector.transfers` (one transaction each: an outbox command with the admin as
``requested_by``, plus a log line); the wallet and profile change only when the projector sees the chain's
``WalletFrozen`` / ``WalletUnfrozen``. Freeze first shows a page asking for the reason (1–140 characters, it
goes on chain). Only ACTIVE profiles can be frozen and only FROZEN ones unfrozen; others get an error
message. Operators need the ``projector.change_wallet`` permission; wallets are never added, edited or deleted
here (they are a projection of the chain).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from gxbackend.admin import reason_form_page
from gxbackend.counting import EstimatedCountPaginator
from gxbackend.exceptions import DomainError
from gxbackend.text import validate_plain_text
from projector import transfers
from projector.models import Wallet
from projector.selectors import gx


class FreezeForm(forms.Form):
    reason = forms.CharField(min_length=1, max_length=transfers.FREEZE_REASON_MAX, strip=True,
                             widget=forms.TextInput(attrs={"size": 80}), validators=[validate_plain_text],
                             help_text="Recorded on chain with the freeze; 1–140 characters.")


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ("email", "profile_status", "balance", "frozen", "frozen_reason", "updated_at")
    list_filter = ("frozen", "user__profile__status")
    search_fields = ("user__email",)
    list_select_related = ("user__profile",)
    ordering = ("user__email",)
    paginator = EstimatedCountPaginator  # one wallet per user: no full count per page on millions
    show_full_result_count = False
    actions = ["freeze_selected", "unfreeze_selected"]
    fields = ("user", "email", "profile_status", "balance", "balance_qirat", "frozen", "frozen_reason",
              "created_at", "updated_at")
    readonly_fields = fields

    @admin.display(description="email", ordering="user__email")
    def email(self, obj: Wallet) -> str:
        return obj.user.email

    @admin.display(description="profile status", ordering="user__profile__status")
    def profile_status(self, obj: Wallet) -> str:
        profile = getattr(obj.user, "profile", None)
        return profile.status if profile is not None else "-"

    @admin.display(description="balance (GX)", ordering="balance_qirat")
    def balance(self, obj: Wallet) -> str:
        return gx(obj.balance_qirat)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Wallet | None = None) -> bool:
        return False

    def _run(self, request: HttpRequest, wallets: list[Wallet], call, done: str) -> None:
        count = 0
        for wallet in wallets:
            try:
                call(wallet)
            except DomainError as exc:
                self.message_user(request, f"{wallet.user.email}: {exc.message}", messages.ERROR)
                continue
            count += 1
        if count:
            self.message_user(request, f"{done} for {count} wallet(s); the status changes once the chain confirms.",
                              messages.SUCCESS)

    @admin.action(description="Freeze selected wallets (asks for a reason)", permissions=["change"])
    def freeze_selected(self, request: HttpRequest, queryset: QuerySet[Wallet]) -> HttpResponse | None:
        wallets = list(queryset.select_related("user__profile"))
        form = FreezeForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            reason = form.cleaned_data["reason"]

            def freeze(wallet: Wallet) -> None:
                transfers.wallet_freeze(user_id=wallet.user_id, reason=reason, actor=request.user,
                                        request_id=getattr(request, "request_id", "") or "")
                self.log_change(request, wallet, f"Freeze requested (FREEZE_WALLET enqueued): {reason}")

            self._run(request, wallets, freeze, "FREEZE_WALLET enqueued")
            return None
        return reason_form_page(
            self, request, objects=wallets, form=form, action_name="freeze_selected", verb="Freeze",
            question="Freeze these wallets? Transfers from and to them will be refused until they are unfrozen.",
            lines=[f"{w.user.email} ({w.user.profile.status})" for w in wallets],
        )

    @admin.action(description="Unfreeze selected wallets", permissions=["change"])
    def unfreeze_selected(self, request: HttpRequest, queryset: QuerySet[Wallet]) -> None:
        def unfreeze(wallet: Wallet) -> None:
            transfers.wallet_unfreeze(user_id=wallet.user_id, actor=request.user,
                                      request_id=getattr(request, "request_id", "") or "")
            self.log_change(request, wallet, "Unfreeze requested (UNFREEZE_WALLET enqueued).")

        self._run(request, list(queryset.select_related("user__profile")), unfreeze, "UNFREEZE_WALLET enqueued")
