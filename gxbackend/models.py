"""Idempotency records for mutating endpoints (docs/DESIGN.md §2), stored in the database, not in memory."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class IdempotencyRecord(models.Model):
    """One ``Idempotency-Key`` per user and route: the request's fingerprint and, once done, its response.

    Written in the same transaction as the domain rows and the outbox row; ``completed_at`` is null while
    the first request is still running, which is how a concurrent duplicate is told apart (409).
    """

    key = models.CharField(max_length=128)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    scope = models.CharField(max_length=128, help_text="method and route, e.g. 'POST api/v1/users'")
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key", "user"], name="gx_idempotency_unique",
                                    nulls_distinct=False),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"
