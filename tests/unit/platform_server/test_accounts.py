"""Accounts on a real SQLite file: scrypt passwords, sessions and tokens, and the permission table."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from expertcheckin.v1 import organiser_pb2

from platform_server.db.models import Account, AccountToken, AuditEntry
from platform_server.errors import InvalidRequestError
from platform_server.services import accounts
from platform_server.services.accounts import Permission, Role, UnauthenticatedError
from tests.unit.platform_server.support import seed

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.platform_server.support import Seeded

AT = dt.datetime(2025, 6, 1, 8, 0, tzinfo=dt.UTC)
PASSWORD = "correct horse battery staple"


@pytest.fixture
def s(tmp_path: Path) -> Seeded:
    return seed(f"sqlite:///{tmp_path / 'a.db'}", experts=1)


def test_passwords_are_scrypt_hashed_with_their_cost_and_salt() -> None:
    stored = accounts.hash_password(PASSWORD)
    scheme, n, r, p, _salt, _digest = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2**15, 8, 1)  # 32 MiB per guess
    assert accounts.password_matches(PASSWORD, stored)
    assert not accounts.password_matches(PASSWORD + "!", stored)
    assert accounts.hash_password(PASSWORD) != stored  # salted
    assert not accounts.password_matches(PASSWORD, "md5$abc")
    with pytest.raises(InvalidRequestError, match="12 to 1024"):
        accounts.hash_password("short")


def test_login_opens_a_session_that_ends(s: Seeded) -> None:
    accounts.add_account(s.new_uow(), username="he.min", role=Role.FINANCE, password=PASSWORD, actor="os:t", at=AT)
    person, token = accounts.login(s.new_uow(), "he.min", PASSWORD, at=AT)
    assert person.role == Role.FINANCE
    assert accounts.authenticate_token(s.new_uow(), token, at=AT + dt.timedelta(hours=11)).username == "he.min"
    with pytest.raises(UnauthenticatedError, match="expired"):
        accounts.authenticate_token(s.new_uow(), token, at=AT + accounts.SESSION_LIFETIME)
    with s.uow.engine.connect() as c:
        stored = c.execute(sa.select(AccountToken.token_hash)).scalars().all()
        assert token not in stored
        assert accounts.token_hash(token) in stored
    accounts.logout(s.new_uow(), token, at=AT + dt.timedelta(hours=1))
    with pytest.raises(UnauthenticatedError, match="revoked"):
        accounts.authenticate_token(s.new_uow(), token, at=AT + dt.timedelta(hours=1))


@pytest.mark.parametrize(("username", "password"), [("he.min", "wrong password here"), ("nobody", PASSWORD)])
def test_a_wrong_password_and_an_unknown_name_get_the_same_answer_and_are_audited(
    s: Seeded, username: str, password: str
) -> None:
    accounts.add_account(s.new_uow(), username="he.min", role=Role.VIEWER, password=PASSWORD, actor="os:t", at=AT)
    with pytest.raises(UnauthenticatedError, match=r"^wrong name or password$"):
        accounts.login(s.new_uow(), username, password, at=AT)
    with s.uow.engine.connect() as c:
        outcome = c.execute(sa.select(AuditEntry.outcome).where(AuditEntry.actor == f"login:{username}")).scalar_one()
    assert outcome == "refused"


def test_a_disabled_person_cannot_log_in_or_use_a_token(s: Seeded) -> None:
    accounts.add_account(s.new_uow(), username="he.min", role=Role.ADMIN, password=PASSWORD, actor="os:t", at=AT)
    token = accounts.issue_token(s.new_uow(), "he.min", actor="os:t", at=AT)
    accounts.set_disabled(s.new_uow(), "he.min", disabled=True, actor="os:t", at=AT)
    with pytest.raises(UnauthenticatedError):
        accounts.authenticate_token(s.new_uow(), token, at=AT)
    with pytest.raises(UnauthenticatedError):
        accounts.login(s.new_uow(), "he.min", PASSWORD, at=AT)
    accounts.set_disabled(s.new_uow(), "he.min", disabled=False, actor="os:t", at=AT)
    with pytest.raises(UnauthenticatedError, match="revoked"):
        accounts.authenticate_token(s.new_uow(), token, at=AT)  # stays revoked: a new one must be issued


@pytest.mark.parametrize("name", ["", "Wang", "wang li", "王丽", "x" * 65])
def test_usernames_are_plain(s: Seeded, name: str) -> None:
    with pytest.raises(InvalidRequestError, match="username"):
        accounts.add_account(s.new_uow(), username=name, role=Role.VIEWER, actor="os:t", at=AT)
    with s.uow.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(Account)).scalar_one() == 0


def test_only_finance_and_admin_see_full_numbers() -> None:
    seeing = {role for role, granted in accounts.ROLE_PERMISSIONS.items() if Permission.SEE_FULL_NUMBERS in granted}
    assert seeing == {Role.FINANCE, Role.ADMIN}
    assert accounts.ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    assert Permission.RESET_FACE_ATTEMPTS in accounts.ROLE_PERMISSIONS[Role.ORGANISER]
    assert Permission.RESET_FACE_ATTEMPTS not in accounts.ROLE_PERMISSIONS[Role.FINANCE]


def test_every_organiser_rpc_is_in_the_permission_table() -> None:
    service = organiser_pb2.DESCRIPTOR.services_by_name["OrganiserService"]
    assert {m.name for m in service.methods} == set(accounts.RPC_PERMISSIONS)
