"""`platform-server cases ...` and `platform-server kiosks disable|enable|remove|cert|revoke-cert` as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.models import AuditEntry, Kiosk
from platform_server.dev_certs import make_dev_certificates
from platform_server.services import cases, events
from tests.unit.platform_server.support import seed

if TYPE_CHECKING:
    from tests.unit.platform_server.support import Seeded

PLATFORM_SERVER = Path(sys.executable).with_name("platform-server")
DATA_KEY_TEXT = "test-only data key, never used in production"  # support.TEST_KEY


def cli(seeded: Seeded, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    env["PLATFORM_DATA_KEY"] = DATA_KEY_TEXT
    return subprocess.run(
        [str(PLATFORM_SERVER), "--db", seeded.url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cases_list_show_and_resolve_with_a_reason(tmp_path: Path) -> None:
    seeded = seed(f"sqlite:///{tmp_path / 'p.db'}", kiosk_ids=["K1"])
    uow = seeded.new_uow()
    with uow:
        batch_id = events.batch_id_of(uow, seeded.batch_code)
    case_id = cases.open_case_now(
        seeded.new_uow(),
        seeded.ctx,
        kind=cases.CaseKind.QUEUED_CHECK_IN_REFUSED,
        created_by="K1",
        kiosk_id="K1",
        batch_id=batch_id,
        band_uid="04A1B2C3D4E5F0",
        reason="BATCH_CLOSED",
    )
    listed = cli(seeded, "cases", "list")
    assert listed.returncode == 0, listed.stderr
    assert case_id in listed.stdout
    assert "04A1B2C3D4E5F0" in listed.stdout
    assert "BATCH_CLOSED" in listed.stdout
    assert "open cases 1" in cli(seeded, "status", "--batch", seeded.batch_code).stdout
    no_reason = cli(seeded, "cases", "resolve", case_id, "--reason", " ")
    assert no_reason.returncode == 3
    assert "needs a reason" in no_reason.stderr
    done = cli(seeded, "cases", "resolve", case_id, "--reason", "band returned at the desk")
    assert done.returncode == 0, done.stderr
    assert "no cases" in cli(seeded, "cases", "list").stdout
    shown = cli(seeded, "cases", "show", case_id)
    assert "resolved" in shown.stdout
    assert "band returned at the desk" in shown.stdout
    assert cli(seeded, "cases", "show", "case_nothing").returncode == 4
    assert "open cases 0" in cli(seeded, "status", "--batch", seeded.batch_code).stdout
    with seeded.uow._session_factory.kw["bind"].connect() as connection:
        actors = connection.execute(
            sa.select(AuditEntry.actor).where(AuditEntry.action == "needs_staff_resolve")
        ).scalars()
        assert [a.startswith("os:") for a in actors] == [True]  # direct mode names the host's OS account


def test_kiosks_disable_enable_remove_and_certificates(tmp_path: Path) -> None:
    seeded = seed(f"sqlite:///{tmp_path / 'p.db'}", kiosk_ids=["K1", "K2"])
    make_dev_certificates(tmp_path / "certs", ["K1"], ["localhost"])
    assert cli(seeded, "kiosks", "disable", "K1").returncode == 2  # --reason is required
    disabled = cli(seeded, "kiosks", "disable", "K1", "--reason", "screen smashed")
    assert disabled.returncode == 0, disabled.stderr
    wrong_cn = cli(seeded, "kiosks", "cert", "K2", str(tmp_path / "certs" / "kiosk-K1.pem"))
    assert wrong_cn.returncode == 3
    assert "CN" in wrong_cn.stderr
    registered = cli(seeded, "kiosks", "cert", "K1", str(tmp_path / "certs" / "kiosk-K1.pem"))
    assert registered.returncode == 0, registered.stderr
    assert "sha256" in registered.stdout
    engine = seeded.uow._session_factory.kw["bind"]
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(Kiosk.disabled_at, Kiosk.disabled_reason, Kiosk.cert_sha256).where(Kiosk.kiosk_id == "K1")
        ).one()
    assert row[0] is not None
    assert row[1] == "screen smashed"
    assert row[2] is not None
    assert len(row[2]) == 64
    assert cli(seeded, "kiosks", "enable", "K1").returncode == 0
    assert cli(seeded, "kiosks", "revoke-cert", "K1").returncode == 0
    assert cli(seeded, "kiosks", "remove", "K2").returncode == 0
    assert cli(seeded, "kiosks", "remove", "K2").returncode == 4  # already gone
    with engine.connect() as connection:
        k1 = connection.execute(sa.select(Kiosk.disabled_at, Kiosk.cert_sha256).where(Kiosk.kiosk_id == "K1")).one()
        k2 = connection.execute(sa.select(Kiosk.removed_at).where(Kiosk.kiosk_id == "K2")).scalar_one()
        actions = list(
            connection.execute(
                sa.select(AuditEntry.action)
                .where(AuditEntry.actor.like("os:%"), AuditEntry.action.like("kiosk%"))
                .order_by(AuditEntry.id)
            ).scalars()
        )
    assert tuple(k1) == (None, None)
    assert k2 is not None
    assert actions == [
        "kiosk_disable",
        "kiosk_certificate",
        "kiosk_enable",
        "kiosk_certificate_revoke",
        "kiosk_remove",
    ]
