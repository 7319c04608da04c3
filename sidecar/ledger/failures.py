"""Whose fault a failed ledger write is: the database's (an outage: spool and retry later) or the
row's (the database will refuse it however often it is sent: set it aside).

Only errors that name a value are a row's fault: `DataError` (too long, out of range, NUL in
text), `IntegrityError` (a constraint; the idempotent duplicate is an upsert and never raises)
and a value the driver cannot convert. Anything else, including a missing table or a server
error, is treated as an outage: a row is never set aside for a fault that is not its own.
"""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

# Raised by a driver or a type conversion for one value (an int beyond 64 bits, a string that
# cannot be encoded); SQLAlchemy wraps them in a `StatementError` with the original in `orig`.
_VALUE_ERRORS = (ValueError, TypeError, OverflowError, UnicodeError)


def is_bad_row(exc: BaseException) -> bool:
    """True when `exc` means "this data", not "this database", so a retry cannot succeed."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return False
        return isinstance(exc, DataError | IntegrityError)
    if isinstance(exc, StatementError):
        return isinstance(exc.orig, _VALUE_ERRORS)
    return isinstance(exc, _VALUE_ERRORS)
