"""The audit chainer: a thread of every serving process on PostgreSQL that places sealed audit entries.

Writers on PostgreSQL only seal their audit entry (services.audit_chain); this thread gives the sealed
entries committed since its last round their places in the chain, every `interval_s`, and once more
when the process stops. Each replica runs one: a round that finds another replica's chainer holding the
tip skips instead of queueing, so the chain still has one writer at a time. A database that cannot be
reached ends the round with a warning; the next round tries again.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from platform_server.services import audit_chain

if TYPE_CHECKING:
    import sqlalchemy as sa

log = logging.getLogger(__name__)

INTERVAL_S = 0.2  # how long a sealed entry waits for its place, at most, while the platform runs


class AuditChainer:
    """Runs audit_chain.chain_pending every `interval_s` on a thread until stop()."""

    def __init__(self, engine: sa.Engine, *, interval_s: float = INTERVAL_S) -> None:
        """Chain on `engine` with the audit key bound to it (services.keyring opened it)."""
        self._engine = engine
        self._key = audit_chain.key_for(engine)
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-chainer", daemon=True)
        self.placed = 0  # entries this chainer placed (tests, logs)

    def start(self) -> AuditChainer:
        """Start the thread."""
        self._thread.start()
        return self

    def _round(self) -> None:
        try:
            while True:
                placed = audit_chain.chain_pending(self._engine, self._key)
                if placed is None:  # another replica's chainer is placing: its round covers ours
                    return
                self.placed += placed
                if placed < audit_chain.CHAIN_BATCH:
                    return
        except Exception as err:  # a restarting database: the next round retries
            log.warning("audit chainer: this round failed, the next one retries: %s", err)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            self._round()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after a last round, so what this process wrote is placed before it ends."""
        self._stopping.set()
        self._thread.join(timeout)
        self._round()
