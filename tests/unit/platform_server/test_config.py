from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from platform_server.bootstrap import build
from platform_server.config import BACKGROUND_CONNECTIONS, check_for_serving, face_places_for, load_config
from platform_server.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path


def test_toml_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "platform.toml"
    path.write_text('[server]\nlisten = "0.0.0.0:6000"\n[rules]\nannul_window_s = 300\n', encoding="utf-8")
    config = load_config(
        path,
        environ={
            "PLATFORM_RULES_ANNUL_WINDOW_S": "120",
            "PLATFORM_DB_URL": "sqlite:///x.db",
            "PLATFORM_TEST_PG_URL": "ignored",
        },
    )
    assert config.server.listen == "0.0.0.0:6000"
    assert config.rules.annul_window_s == 120
    assert config.database.url == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("[sever]\nlisten='x'\n", {}, "Unknown section 'sever'"),
        ("[server]\nlisen='x'\n", {}, "Unknown option 'lisen' in section 'server'"),
        ("[server]\nmax_workers=1\n", {}, "must be at least 2"),
        ("[server]\nmax_workers='many'\n", {}, "must be int"),
        ("[face]\nverifier='magic'\n", {}, "must be one of dlib, none"),
        ("[face]\nliveness='nobody'\n", {}, "must be one of platform, kiosk"),
        ("", {"PLATFORM_RULES_FACE_MAX_ATTEMPTS": "0"}, "environment PLATFORM_RULES_FACE_MAX_ATTEMPTS"),
        ("", {"PLATFORM_SERVER_NOPE": "1"}, "Unknown option 'nope'"),
        ("[server\n", {}, "not valid TOML"),
    ],
)
def test_bad_configuration_is_named(tmp_path: Path, text: str, environ: dict[str, str], message: str) -> None:
    path = tmp_path / "platform.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ=environ)


def test_production_refuses_to_start_without_key_or_tls() -> None:
    with pytest.raises(ConfigError, match="data_key"):
        check_for_serving(load_config(environ={"PLATFORM_SECURITY_MODE": "production"}))
    with pytest.raises(ConfigError, match="tls_cert"):
        check_for_serving(
            load_config(
                environ={
                    "PLATFORM_SECURITY_MODE": "production",
                    "PLATFORM_DATA_KEY": "k" * 32,
                    "PLATFORM_SERVER_LISTEN": "0.0.0.0:50051",
                }
            )
        )


def test_bootstrap_refuses_production_without_data_key(tmp_path: Path) -> None:
    config = load_config(
        environ={"PLATFORM_SECURITY_MODE": "production", "PLATFORM_DB_URL": f"sqlite:///{tmp_path / 'p.db'}"}
    )
    with pytest.raises(ConfigError, match="refusing to start"):
        build(config, face_verifier=None)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, 32 + BACKGROUND_CONNECTIONS),  # the defaults: one per request thread, and a few more
        ({"PLATFORM_SERVER_MAX_WORKERS": "64"}, 64 + BACKGROUND_CONNECTIONS),
        ({"PLATFORM_SERVER_MAX_WORKERS": "64", "PLATFORM_DATABASE_POOL_SIZE": "20"}, 20),  # as configured
    ],
)
def test_the_pool_follows_the_request_threads_unless_its_size_is_set(environ: dict[str, str], expected: int) -> None:
    assert load_config(None, environ=environ).pool_size == expected


def test_the_engine_is_built_with_the_pool_the_configuration_gives(tmp_path: Path) -> None:
    config = load_config(None, environ={"PLATFORM_DB_URL": f"sqlite:///{tmp_path / 'p.db'}"})
    platform = build(config)
    try:
        assert platform.engine.pool.size() == config.pool_size  # type: ignore[attr-defined]
    finally:
        platform.close()


ENV = "PLATFORM_DATABASE_"


def test_identifies_wait_for_the_disk_only_when_configured(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    path = tmp_path / "platform.toml"
    path.write_text("[database]\nidentify_synchronous_commit = true\n", encoding="utf-8")
    for config, waits in (
        (load_config(None, environ={"PLATFORM_DB_URL": url}), False),
        (load_config(path, environ={"PLATFORM_DB_URL": url}), True),
        (load_config(None, environ={"PLATFORM_DB_URL": url, f"{ENV}IDENTIFY_SYNCHRONOUS_COMMIT": "1"}), True),
    ):
        assert config.database.identify_synchronous_commit is waits
        platform = build(config)
        try:
            assert platform.ctx.identify_synchronous_commit is waits  # what services.identify reads
        finally:
            platform.close()


def test_the_platform_checks_liveness_itself_unless_told_to_trust_the_kiosk(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    for environ, checks in (({}, True), ({"PLATFORM_FACE_LIVENESS": "kiosk"}, False)):
        config = load_config(None, environ={"PLATFORM_DB_URL": url, **environ})
        platform = build(config, start_uwb_worker=False)
        try:
            assert platform.ctx.face_verifier is not None  # faces are compared either way
            assert (platform.ctx.liveness_checker is not None) is checks
        finally:
            platform.close()


@pytest.mark.parametrize(
    ("max_workers", "queue", "workers", "expected"),
    [
        (32, 16, 2, (2, 16)),  # the defaults on two cores: 18 of 32 threads
        (64, 40, 2, (2, 40)),  # 42 of 64: within the three quarters
        (32, 40, 2, (2, 22)),  # 24 of 32 at most
        (32, 16, 16, (16, 8)),  # a 16-core machine with the default threads
        (32, 16, 30, (24, 0)),  # more cores than three quarters of the threads: no queue, 24 workers
    ],
)
def test_the_face_places_leave_a_quarter_of_the_request_threads_to_other_calls(
    max_workers: int, queue: int, workers: int, expected: tuple[int, int]
) -> None:
    config = load_config(environ={"PLATFORM_SERVER_MAX_WORKERS": str(max_workers), "PLATFORM_FACE_QUEUE": str(queue)})
    usable_workers, usable_queue, note = face_places_for(config, workers)
    assert (usable_workers, usable_queue) == expected
    if expected == (workers, queue):
        assert note is None
    else:
        assert note is not None
        assert f"processes {workers} → {expected[0]}, queue {queue} → {expected[1]}" in note
        assert f"of the {max_workers} request threads" in note


@pytest.mark.parametrize(
    ("environ", "workers"),
    [
        ({"PLATFORM_FACE_QUEUE": "0"}, 1),  # one worker, no queue: the pair never fits
        ({"PLATFORM_SERVER_MAX_WORKERS": "2"}, 2),  # two threads leave one place
    ],
)
def test_face_places_that_cannot_hold_one_identify_with_the_platforms_liveness_check_are_refused(
    environ: dict[str, str], workers: int
) -> None:
    with pytest.raises(ConfigError, match="leave fewer than the 2 places one identify takes"):
        face_places_for(load_config(environ=environ), workers)
    # With the liveness left to the kiosk an identify takes one place: the same settings serve.
    usable_workers, queue, _note = face_places_for(
        load_config(environ=environ | {"PLATFORM_FACE_LIVENESS": "kiosk"}), workers
    )
    assert usable_workers + queue >= 1
