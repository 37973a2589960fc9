"""What every PC/SC card reader driver needs around its card dialogue: a cancellable context, one error map.

The band reader and the bank card reader both open a context per operation, let the kiosk cancel
its wait from another thread, and turn the PC/SC failures into their own few errors the same way:
no card in time (or cancelled), reader or service missing, card taken away, anything else.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pcsc.client import PcscContext
from pcsc.errors import (
    CardAbsentError,
    CardWaitTimeoutError,
    PcscError,
    PcscServiceUnavailableError,
    ReaderNotFoundError,
    WaitCancelledError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


class CancellableContext:
    """Opens one PcscContext at a time; cancel() from any thread aborts the wait in it."""

    def __init__(self) -> None:
        self._context: PcscContext | None = None
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """True while an operation's context is open (and so cancel() reaches it)."""
        with self._lock:
            return self._context is not None

    def cancel(self) -> None:
        """Abort a wait in the open context, if one is open (the wait raises WaitCancelledError)."""
        with self._lock:
            if self._context is not None:
                self._context.cancel()

    @contextmanager
    def open(self) -> Iterator[PcscContext]:
        """A fresh context for one operation, cancellable while it is open, released after."""
        with PcscContext() as context:
            with self._lock:
                self._context = context
            try:
                yield context
            finally:
                with self._lock:
                    self._context = None


@contextmanager
def pcsc_errors_as(
    *,
    no_card: Callable[[PcscError], Exception],
    unavailable: Callable[[PcscError], Exception],
    removed: Callable[[PcscError], Exception],
    failed: Callable[[PcscError], Exception],
) -> Iterator[None]:
    """Raise the driver's error for each PC/SC failure inside: timeout or cancel, no service or reader, absent, other.

    Errors that are not PC/SC errors (the driver's own protocol errors) pass through unchanged.
    """
    try:
        yield
    except (CardWaitTimeoutError, WaitCancelledError) as err:
        raise no_card(err) from err
    except (PcscServiceUnavailableError, ReaderNotFoundError) as err:
        raise unavailable(err) from err
    except CardAbsentError as err:
        raise removed(err) from err
    except PcscError as err:
        raise failed(err) from err
