"""The one exception type users see: a clear, actionable message and nothing changed."""


class TracebankError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits non-zero.

    Raise it before anything is written: every stage validates its input first, so an error
    leaves the catalog, its data files and the request cache as they were.
    """
