"""Counts that stay cheap on tables of millions of rows: exact while small, PostgreSQL's estimate when large.

An exact ``COUNT(*)`` reads every row (or every index entry) it counts: on the outbox or the transactions table,
which only grow, that is seconds per admin page or per ``outbox_status``. Above ``EXACT_BELOW`` rows (by the
table's ``pg_class.reltuples``, kept by autovacuum's ANALYZE) the planner's row estimate for the same query is
used instead, the technique PostgreSQL's wiki recommends ("Count estimate").
"""

from __future__ import annotations

import json
from functools import cached_property

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet

#: Tables with fewer rows than this are counted exactly.
EXACT_BELOW = 100_000


def table_rows_estimate(model: type, *, using: str = "default") -> int | None:
    """``pg_class.reltuples`` of the model's table (None elsewhere than PostgreSQL, or never analyzed)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", [model._meta.db_table])
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


def is_large(model: type, *, using: str = "default") -> bool:
    rows = table_rows_estimate(model, using=using)
    return rows is not None and rows >= EXACT_BELOW


def count_or_estimate(queryset: QuerySet) -> tuple[int, bool]:
    """``(count, estimated)``: the exact count on a small table, the planner's estimate on a large one."""
    if not is_large(queryset.model, using=queryset.db):
        return queryset.count(), False
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"]), True


class EstimatedCountPaginator(Paginator):
    """The admin's paginator for tables that only grow: exact page counts while small, estimated when large
    (the last page number may then be off; each page itself is exact)."""

    @cached_property
    def count(self) -> int:
        if isinstance(self.object_list, QuerySet):
            return count_or_estimate(self.object_list)[0]
        return super().count
