"""The platform's one composition root: engine, data key, face verifier, services context, UWB worker."""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from personal_data.crypto import DataKey
from platform_server.config import face_places_for
from platform_server.db.engine import is_up_to_date, make_engine, make_session_factory, upgrade
from platform_server.db.unit_of_work import UnitOfWork
from platform_server.errors import ConfigError
from platform_server.face import dlib_verifier, liveness_check, pool  # lazy (lazy_imports): dlib loads on use
from platform_server.services import keyring
from platform_server.services.context import ServiceContext, utc_now

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    import sqlalchemy as sa
    import sqlalchemy.orm as so

    from platform_server.config import PlatformConfig
    from platform_server.face.api import FaceVerifier, LivenessChecker

log = logging.getLogger(__name__)

# Development only: a fixed, publicly known key so a dev database survives restarts. Production refuses it.
DEVELOPMENT_DATA_KEY = "development-only key: NOT for real personal data"


@dataclass
class Platform:
    """Everything a process of the platform needs, built from configuration."""

    config: PlatformConfig
    engine: sa.Engine
    session_factory: so.sessionmaker[so.Session]
    ctx: ServiceContext
    stopping: threading.Event = field(default_factory=threading.Event)
    uwb_worker: Any = None
    audit_chainer: Any = None  # platform_server.audit_chainer.AuditChainer, serving on PostgreSQL

    def new_uow(self) -> UnitOfWork:
        """A fresh unit of work (one per call: units of work are not shared between threads)."""
        return UnitOfWork(self.session_factory)

    def close(self) -> None:
        """Stop the worker and release database connections."""
        self.stopping.set()
        if self.uwb_worker is not None:
            self.uwb_worker.stop()
        if self.audit_chainer is not None:
            self.audit_chainer.stop()  # after the UWB worker: its last acknowledgements get their places
        close_verifier = getattr(self.ctx.face_verifier, "close", None)
        if close_verifier is not None:
            close_verifier()  # worker processes (face/pool.py)
        self.engine.dispose()


def data_key_from(config: PlatformConfig) -> DataKey:
    """The configured data key; in development a fixed insecure one (with a warning) if none is set."""
    if config.security.data_key:
        try:
            return DataKey.from_text(config.security.data_key)
        except ValueError as err:
            raise ConfigError(f"Option 'data_key' in section 'security' is unusable: {err}") from err
    if config.production:
        raise ConfigError("production mode needs [security] data_key (or PLATFORM_DATA_KEY): refusing to start")
    log.warning("no data key configured: using the DEVELOPMENT key; never load real personal data like this")
    return DataKey.from_text(DEVELOPMENT_DATA_KEY)


def face_verifier_from(config: PlatformConfig, *, worker_processes: bool = False) -> FaceVerifier | None:
    """The dlib verifier from [face], or None when [face] verifier = "none".

    With `worker_processes` (the server) and [face] processes other than 0 it runs in worker processes
    (face/pool.py); commands and seeding encode a few photos one at a time and keep it in-process.
    """
    if config.face.verifier == "none":
        return None
    if config.face.processes != 0 and worker_processes:
        workers, queue, shortened = face_places_for(config, pool.worker_count(config.face.processes))
        if shortened:
            log.warning(shortened)
        return pool.ProcessFaceVerifier(
            functools.partial(face_verifier_from, config),
            threshold=config.face.threshold,
            processes=workers,
            queue=queue,
            max_image_bytes=config.face.max_image_bytes,
            log_level=config.logging.level,
            log_file=config.logging.file or None,
            # The liveness check's dlib work (about four descriptors per Identify) in the same workers.
            liveness_factory=functools.partial(liveness_checker_from, config)
            if config.face.liveness == "platform"
            else None,
        )
    return dlib_verifier.DlibFaceVerifier(
        threshold=config.face.threshold,
        max_image_bytes=config.face.max_image_bytes,
        max_pixels=config.face.max_pixels,
    )


def liveness_checker_from(config: PlatformConfig, verifier: object = None) -> LivenessChecker | None:
    """The platform's own liveness check of the kiosk's challenge frames, with the dlib verifier.

    With the verifier's worker processes (face/pool.py) the check runs in them too, not in the server.
    None with [face] liveness = "kiosk": the kiosk's flag is trusted (said once at start, in the log).
    """
    if config.face.verifier == "none" or config.face.liveness == "kiosk":
        return None
    if isinstance(verifier, pool.ProcessFaceVerifier):
        return pool.PooledLivenessChecker(verifier)
    # The captures are described as the comparison describes them: with its verifier (in process, or
    # the face worker's own, built just before), else with one built from the same [face] settings.
    if not isinstance(verifier, dlib_verifier.DlibFaceVerifier):
        verifier = pool.worker_verifier() or face_verifier_from(config)
    assert isinstance(verifier, dlib_verifier.DlibFaceVerifier)  # [face] verifier is "dlib" here
    return liveness_check.DlibLivenessChecker(verifier=verifier)


def build(
    config: PlatformConfig,
    *,
    face_verifier: FaceVerifier | str | None = "from-config",
    liveness_checker: LivenessChecker | str | None = "from-config",
    clock: Callable[[], dt.datetime] = utc_now,
    migrate: bool = True,
    start_uwb_worker: bool = True,
    rotating: bool = False,
    face_workers: bool = False,
) -> Platform:
    """Build the platform; tests pass their own face verifier (a fake) and clock.

    `rotating` lets `keys rotate` open a database whose rotation was interrupted (nothing else may).
    `face_workers`: verify faces in worker processes ([face] processes); the server asks for it.
    The liveness checker comes from the config only with the configured verifier: a test that passes
    its own verifier gets none (the kiosk's flag is trusted) unless it passes a checker too.
    """
    engine = make_engine(config.database.url, pool_size=config.pool_size)
    if migrate:
        upgrade(engine)
    elif not is_up_to_date(engine):
        raise ConfigError(f"database {engine.url!r} is not at the newest schema: run `platform-server db upgrade`")
    data_key = data_key_from(config)
    try:
        # A different data key than the database's is refused here, before anything reads or writes.
        keyring.open_keys(engine, data_key, rotating=rotating)
        verifier = (
            face_verifier_from(config, worker_processes=face_workers)
            if isinstance(face_verifier, str)
            else face_verifier
        )
    except BaseException:  # a key refused, face places that cannot hold an identify: nothing left open
        engine.dispose()
        raise
    if isinstance(liveness_checker, str):
        liveness = liveness_checker_from(config, verifier) if isinstance(face_verifier, str) else None
        if verifier is not None and config.face.liveness == "kiosk":
            log.warning(
                "[face] liveness = kiosk: the kiosks' liveness flag is trusted, their challenge frames are not checked"
            )
    else:
        liveness = liveness_checker
    ctx = ServiceContext(
        data_key=data_key,
        rules=config.rules,
        face_verifier=verifier,
        clock=clock,
        liveness_checker=liveness,
        identify_synchronous_commit=config.database.identify_synchronous_commit,
    )
    platform = Platform(config, engine, make_session_factory(engine), ctx)
    if start_uwb_worker and config.uwb.port:
        platform.uwb_worker = _start_uwb_worker(platform)
    return platform


def _start_uwb_worker(platform: Platform) -> Any:
    """>>> UWB delivery worker goes here <<< (platform_server/uwb_delivery.py, by the UWB engineer).

    The worker drains the `uwb_deliveries` outbox through platform_server.services.uwb:
    claim_due(uow, now, limit), mark_delivered(uow, ctx, id), mark_failed_attempt(uow, ctx, id, error, ...).
    """
    try:
        from platform_server import uwb_delivery  # noqa: PLC0415  (optional: a deployment may leave it out)
    except ImportError as err:
        raise ConfigError("[uwb] port is set but platform_server.uwb_delivery is not available") from err
    worker_class: Any = getattr(uwb_delivery, "UwbDeliveryWorker", None)
    factory: Any = getattr(uwb_delivery, "build_worker", None)
    if factory is not None:
        worker = factory(platform)
    elif worker_class is not None:
        worker = worker_class(platform.new_uow, platform.ctx, platform.config.uwb)
    else:
        raise ConfigError("platform_server.uwb_delivery has no UwbDeliveryWorker")
    worker.start()
    return worker
