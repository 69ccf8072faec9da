"""How much database work one public request may ask for, and how much one client may ask for in a minute.

Any valid query can be searched for, but some cost far more than others: sixty-four rare words joined by OR
make PostgreSQL test every question against every word. So every public search, count, preview and estimate
runs inside a `budget`: its statements share one deadline (PostgreSQL's statement_timeout, SQLite's progress
handler), and once it has passed, the request stops and says the search is too broad or too long to run,
rather than holding a web worker and a database core for as long as the query likes.

A budget bounds one request, not a client that sends them one after another: see `questions.allowance`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import OperationalError, connection, transaction

clock = time.monotonic

_deadline: ContextVar[float | None] = ContextVar("search_deadline", default=None)

# A statement cancelled this close to the deadline was cancelled by it: statement_timeout counts whole
# milliseconds from when the statement starts, a little after the budget's clock was read.
_SLACK = 0.005


class TooCostly(Exception):
    """The request's budget ran out before its search did."""

    message = ("This search is too broad or too long to run. Try fewer words or alternatives, a phrase in "
               "quotation marks, or the filters to narrow it.")


def remaining_ms() -> int | None:
    """Whole milliseconds left of the current budget (at least 1: 0 would switch PostgreSQL's time-out off),
    or None outside any budget. Raises TooCostly once it has run out."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    left = deadline - clock()
    if left <= 0:
        raise TooCostly
    return max(1, math.ceil(left * 1000))


# Statements that only steer the transaction: never refused, or a spent budget could not be rolled back.
_CONTROL = ("SAVEPOINT", "RELEASE", "ROLLBACK", "SET", "COMMIT")
# Set while a statement's caller has set its own time-out within the budget (`questions.searching.planner`).
_own_timeout: ContextVar[bool] = ContextVar("own_statement_timeout", default=False)


@contextmanager
def own_timeout() -> Iterator[None]:
    token = _own_timeout.set(True)
    try:
        yield
    finally:
        _own_timeout.reset(token)


def _refuse_when_spent(execute, sql, params, many, context):
    if sql.lstrip()[:9].upper().startswith(_CONTROL):
        return execute(sql, params, many, context)
    left = remaining_ms()
    if context["connection"].vendor == "postgresql" and not _own_timeout.get():
        # What is left, not what the budget started with: the last statement cannot run it over.
        # On the connection, not the statement's cursor, which may be a server-side one.
        context["connection"].connection.execute(f"SET LOCAL statement_timeout = {left}")
    return execute(sql, params, many, context)


def _lift_timeout() -> None:
    if not connection.needs_rollback:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout TO DEFAULT")


def _spent() -> bool:
    deadline = _deadline.get()
    return deadline is not None and clock() >= deadline


@contextmanager
def _interrupt_sqlite() -> Iterator[None]:
    # SQLite has no statement time-out: its progress handler, called every few thousand instructions, stops
    # the statement by answering true, and SQLite raises OperationalError("interrupted"). It reads the deadline
    # of the innermost budget as it runs: a connection has one handler, set by the outermost.
    connection.ensure_connection()
    raw = connection.connection
    raw.set_progress_handler(_spent, 10_000)
    try:
        yield
    finally:
        raw.set_progress_handler(None, 0)


@contextmanager
def budget(seconds: float | None = None) -> Iterator[None]:
    """Run a public request's database work within `seconds` (SEARCH_BUDGET_SECONDS by default); raise
    TooCostly when it runs out."""
    seconds = settings.SEARCH_BUDGET_SECONDS if seconds is None else seconds
    deadline = clock() + seconds
    outer = _deadline.get()
    if outer is not None:
        deadline = min(deadline, outer)
    token = _deadline.set(deadline)
    try:
        with contextlib.ExitStack() as stack:
            if connection.vendor == "postgresql":
                # SET LOCAL needs a transaction. SQLite's would take the write lock from the worker for a read.
                if connection.in_atomic_block:
                    # Only a savepoint: the time-out set for the last statement would outlive it.
                    stack.callback(_lift_timeout)
                stack.enter_context(transaction.atomic())
            elif connection.vendor == "sqlite" and outer is None:
                stack.enter_context(_interrupt_sqlite())
            if outer is None:
                # It reads the innermost budget's deadline as each statement starts: one is enough.
                stack.enter_context(connection.execute_wrapper(_refuse_when_spent))
            yield
    except OperationalError as error:
        if clock() + _SLACK >= deadline:
            raise TooCostly from error
        raise
    finally:
        _deadline.reset(token)
