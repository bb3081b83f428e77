"""ubdcc's order books from Python.

- :class:`Reader` (and its errors): the books in this host's shared memory, read in well under a
  microsecond, from the native module ``ubdcc_local.ubdcc_local`` (Rust, pyo3).
- :mod:`ubdcc_local.push`: an asyncio client of a restapi's push streams (``/ws``), for books on
  any host: :class:`PushClient`, and :class:`BookView` to keep a ``@bookN`` view.
"""

from .ubdcc_local import *  # noqa: F401,F403 (the native module's public names, its __all__)
from .ubdcc_local import __all__ as _native_all
from .push import BookView, PushClient, PushClosed, PushError

__all__ = [*_native_all, "BookView", "PushClient", "PushClosed", "PushError"]
