"""The one exception type users see: a clear, actionable message and nothing changed."""

import os


class TracebankError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits non-zero.

    Raise it before anything is written: every stage validates its input first, so an error
    leaves the catalog, its data files and the request cache as they were.
    """


def check_at_least(config: object, minimum: int, *names: str) -> None:
    """Refuse the first of ``names`` whose value on ``config`` is below ``minimum`` (None means unset)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise TracebankError(f"{name} must be at least {minimum}, got {value}")


def cannot_write(where: str, error: BaseException) -> TracebankError:
    """One line for a write the disk refused (full, read-only, no permission): what, why, what to do.

    Raise it only where the failed write left nothing half-done (a rolled-back transaction, a
    staging folder removed), so that running the same command again, once fixed, is safe.
    """
    code = getattr(error, "errno", None)
    reason = os.strerror(code) if isinstance(code, int) else str(error).splitlines()[0].rsplit(": ", 1)[-1]
    return TracebankError(
        f"cannot write {where}: {reason}; free some space there (or make it writable), then run the same "
        "command again: nothing half-written was kept, and finished teacher responses stay in the request cache"
    )
