"""The one exception type users see: a clear, actionable message and nothing changed."""


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
