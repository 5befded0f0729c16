"""A restricted unpickler for data files (CIFAR "python" batches): numpy arrays and plain containers only.

`pickle.load` runs whatever callable a file names, so a downloaded pickle can run code. This
unpickler resolves only the globals numpy arrays need to be rebuilt; every other global is
refused before anything is called. Lists, dicts, tuples, str, bytes and numbers need no global.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError

# ndarray.__reduce__ names the rebuild function under numpy.core (numpy 1) or numpy._core (numpy 2);
# pickle protocol 5 rebuilds arrays from their buffer with numeric._frombuffer instead.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_FROMBUFFER = np.empty(0).__reduce_ex__(5)[0]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Protocol-2 pickles store bytes as `_codecs.encode(text, 'latin1')`; only that codec is allowed."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refused codec {encoding!r} in _codecs.encode")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose `find_class` admits only numpy's array-rebuilding globals."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only numpy arrays may be unpickled")
        return allowed


def safe_loads(data: bytes, *, encoding: str = "bytes") -> Any:
    """Unpickle `data` with the restricted unpickler.

    `encoding="bytes"` reads Python 2 pickles (the original CIFAR files) with str keys as bytes.
    """
    return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()


def safe_load(path: str | os.PathLike[str], *, encoding: str = "bytes") -> Any:
    """Unpickle the file at `path` with the restricted unpickler; refusals name the file."""
    try:
        return safe_loads(Path(path).read_bytes(), encoding=encoding)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise CnnkitError(f"{path}: refused or unreadable pickle ({error})") from error
