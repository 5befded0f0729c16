"""The one exception type users see: a clear message naming the file or argument at fault."""

from __future__ import annotations


class CnnkitError(Exception):
    """A user-facing error. The CLI prints its message on one line, without a traceback."""
