"""KYC review in the Django admin (docs/DESIGN.md §2, flow 4).

The queue (KYC submissions, pending ones by default, oldest first) is searchable by email; a submission's page
shows the profile beside the documents. Approve and Reject are list actions that call the services (one
transaction each, CREATE_USER enqueued on approval); Reject first shows a page asking for the reason. The
reviewer and the time are stored on the submission and in the admin's history (LogEntry). An approval whose
CREATE_USER the chain refused comes back to the queue with the chain's answer ("refused on chain").
Reviewers need the ``identity.change_kycsubmission`` permission; nothing here can be added or deleted.

The admin's login goes through ``identity.backends.EmailBackend`` (the API's lockout and rate); its form says so
when it refuses for either (``AdminLoginForm``).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from gxbackend.admin import reason_form_page
from gxbackend.counting import EstimatedCountPaginator
from gxbackend.exceptions import DomainError
from gxbackend.text import validate_multiline_text
from identity import services
from identity.backends import REFUSAL_ATTRIBUTE
from identity.models import KycStatus, KycSubmission, User, UserProfile


class AdminLoginForm(AdminAuthenticationForm):
    """The admin's login form: a lockout or rate refusal is named (with its wait), not shown as a wrong password."""

    def get_invalid_login_error(self) -> ValidationError:
        refusal = getattr(self.request, REFUSAL_ATTRIBUTE, None)
        if refusal:
            return ValidationError(refusal, code="login_locked")
        return super().get_invalid_login_error()


admin.site.login_form = AdminLoginForm


class ReviewStatusFilter(admin.SimpleListFilter):
    """Status filter whose default is the queue itself (PENDING); "All" is an explicit choice."""

    title = "review status"
    parameter_name = "review"
    DEFAULT = KycStatus.PENDING.value

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [*((value, label) for value, label in KycStatus.choices), ("all", "All")]

    def choices(self, changelist: Any):
        current = self.value() or self.DEFAULT
        for lookup, title in self.lookup_choices:
            yield {
                "selected": current == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[KycSubmission]) -> QuerySet[KycSubmission]:
        value = self.value() or self.DEFAULT
        return queryset if value == "all" else queryset.filter(status=value)


class RejectionForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 60}), max_length=2000,
                             validators=[validate_multiline_text], help_text="Shown to the applicant; required.")


@admin.register(KycSubmission)
class KycSubmissionAdmin(admin.ModelAdmin):
    list_display = ("email", "full_name", "document_type", "issuing_country", "status", "profile_status",
                    "chain_refusal", "submitted_at", "reviewed_by", "reviewed_at")
    list_filter = (ReviewStatusFilter, "document_type")
    search_fields = ("profile__user__email",)
    list_select_related = ("profile__user", "reviewed_by")
    ordering = ("submitted_at",)
    actions = ["approve_selected", "reject_selected"]
    fieldsets = (
        ("Profile", {"fields": ("email", "full_name", "profile_date_of_birth", "profile_nationality",
                                "profile_phone", "profile_status")}),
        ("Submission", {"fields": ("id", "document_type", "document_number", "issuing_country", "expiry_date",
                                   "document_sha256", "biometric_hash", "submitted_at")}),
        ("Review", {"fields": ("status", "reviewed_by", "reviewed_at", "rejection_reason", "onchain_error")}),
    )

    # --- Columns and the profile beside the submission ------------------------------------------------
    @admin.display(description="email", ordering="profile__user__email")
    def email(self, obj: KycSubmission) -> str:
        return obj.profile.user.email

    @admin.display(description="name")
    def full_name(self, obj: KycSubmission) -> str:
        return f"{obj.profile.first_name} {obj.profile.last_name}"

    @admin.display(description="date of birth")
    def profile_date_of_birth(self, obj: KycSubmission):
        return obj.profile.date_of_birth

    @admin.display(description="nationality")
    def profile_nationality(self, obj: KycSubmission) -> str:
        return obj.profile.nationality

    @admin.display(description="phone")
    def profile_phone(self, obj: KycSubmission) -> str:
        return obj.profile.phone

    @admin.display(description="profile status")
    def profile_status(self, obj: KycSubmission) -> str:
        return obj.profile.status

    @admin.display(description="refused on chain")
    def chain_refusal(self, obj: KycSubmission) -> str:
        # An approval the chain refused is back in the queue: the reviewer sees why before deciding again.
        return obj.onchain_error or "—"

    # --- Read-only record --------------------------------------------------------------------------------
    def get_readonly_fields(self, request: HttpRequest, obj: KycSubmission | None = None) -> list[str]:
        return [field for _, options in self.fieldsets for field in options["fields"]]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: KycSubmission | None = None) -> bool:
        return False

    # --- Actions -----------------------------------------------------------------------------------------
    @admin.action(description="Approve selected submissions (enqueue CREATE_USER)", permissions=["change"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[KycSubmission]) -> None:
        approved: list[str] = []
        for submission in queryset.select_related("profile__user"):
            try:
                done = services.kyc_approve(submission_id=submission.pk, reviewer=request.user,
                                            request_id=getattr(request, "request_id", ""))
            except DomainError as exc:
                self.message_user(request, f"{submission.profile.user.email}: {exc.message}", messages.ERROR)
                continue
            command_id = done.command.command_id
            self.log_change(request, submission, f"Approved KYC; CREATE_USER enqueued (command {command_id}).")
            # The command's admin page for the reviewer; its status_url for API clients (GET ?wait= follows it).
            approved.append(format_html(
                '{}: command <a href="{}">{}</a>, status_url {}', submission.profile.user.email,
                reverse("admin:outbox_outboxcommand_change", args=[done.command.pk]), command_id,
                reverse("command-detail", kwargs={"command_id": command_id})))
        if approved:
            self.message_user(request, format_html(
                "Approved {} submission(s); CREATE_USER enqueued for each: {}", len(approved),
                format_html_join("; ", "{}", ((line,) for line in approved))), messages.SUCCESS)

    @admin.action(description="Reject selected submissions (asks for a reason)", permissions=["change"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[KycSubmission]) -> HttpResponse | None:
        submissions = list(queryset.select_related("profile__user"))
        form = RejectionForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            rejected = 0
            for submission in submissions:
                try:
                    services.kyc_reject(submission_id=submission.pk, reviewer=request.user,
                                       reason=form.cleaned_data["reason"])
                except DomainError as exc:
                    self.message_user(request, f"{submission.profile.user.email}: {exc.message}", messages.ERROR)
                    continue
                self.log_change(request, submission, f"Rejected KYC: {form.cleaned_data['reason']}")
                rejected += 1
            if rejected:
                self.message_user(request, f"Rejected {rejected} submission(s).", messages.SUCCESS)
            return None  # back to the queue
        return reason_form_page(
            self, request, objects=submissions, form=form, action_name="reject_selected", verb="Reject",
            question="Reject these KYC submissions? The applicants may submit again.",
            lines=[f"{s.profile.user.email} — {s.profile.first_name} {s.profile.last_name}, "
                   f"{s.get_document_type_display()} {s.document_number} ({s.issuing_country})" for s in submissions],
        )


class KycSubmissionInline(admin.TabularInline):
    model = KycSubmission
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("document_type", "document_number", "issuing_country", "status", "submitted_at", "reviewed_by",
              "reviewed_at", "rejection_reason", "onchain_error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UserProfile)
class UserProfileAdmin(admin.ModelAdmin):
    list_display = ("email", "first_name", "last_name", "nationality", "status", "created_at")
    list_filter = ("status", "nationality")
    search_fields = ("user__email", "last_name")
    list_select_related = ("user",)
    paginator = EstimatedCountPaginator  # millions of users: no full count per page (gxbackend/counting.py)
    show_full_result_count = False
    inlines = [KycSubmissionInline]
    readonly_fields = ("user", "first_name", "last_name", "date_of_birth", "nationality", "phone", "status",
                       "onchain_registered_at", "onchain_error", "created_at", "updated_at")

    @admin.display(description="email", ordering="user__email")
    def email(self, obj: UserProfile) -> str:
        return obj.user.email

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UserProfile | None = None) -> bool:
        return False


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    """Accounts: activate/deactivate, grant staff and the KYC-review permission. Users register via the API."""

    list_display = ("email", "is_active", "is_staff", "is_superuser", "date_joined", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser")
    search_fields = ("email",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    fields = ("email", "is_active", "is_staff", "is_superuser", "groups", "user_permissions", "date_joined",
              "last_login")
    readonly_fields = ("email", "date_joined", "last_login")
    filter_horizontal = ("groups", "user_permissions")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        return False
