"""Explicit lifecycle, written once: ``close()`` is idempotent, ``closed`` tells, ``with`` closes.

Modelled on gpiozero's ``GPIOBase``: subclasses release their resources in :meth:`_close`, which
runs at most once; nothing happens in ``__del__``.  Components that must be started (audio
sources) start in ``__enter__``; the rest return themselves.
"""

from __future__ import annotations

from typing import Self

from .errors import DeviceUnavailableError

__all__ = ["Closeable"]


class Closeable:
    """Base of every component that holds a resource (a model, a device, a file, a thread)."""

    _closed: bool = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def close(self) -> None:
        """Release what this object holds; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._close()

    def _close(self) -> None:
        """Release resources; called once by :meth:`close`.  Override."""

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceUnavailableError(f"{self!r} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
