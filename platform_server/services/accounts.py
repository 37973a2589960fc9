"""Organiser people: accounts, roles, the permission table, passwords and tokens.

Plain service code (no gRPC, no web): the organiser gRPC service uses it today, a web console can use
the same authentication, session tokens and permission table later. Every decision a person's role
makes is read from `ROLE_PERMISSIONS`, and every organiser RPC names the permission it needs in
`RPC_PERMISSIONS`: the one place to read who may do what.

Passwords are hashed with scrypt (memory-hard: 32 MiB per guess); tokens are 256-bit random strings,
stored only as their SHA-256 (a fast hash is enough for a secret nobody can guess), shown once.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.models import Account, AccountToken
from platform_server.errors import AlreadyExistsError, InvalidRequestError, NotFoundError, PermissionDeniedError
from platform_server.services import audit

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork


class Role(enum.StrEnum):
    """What a person is at the platform; each role is a set of permissions (ROLE_PERMISSIONS)."""

    VIEWER = "viewer"
    ORGANISER = "organiser"
    FINANCE = "finance"
    ADMIN = "admin"


class Permission(enum.StrEnum):
    """One thing a person may do or see."""

    VIEW_BATCHES = "view_batches"
    VIEW_STATISTICS = "view_statistics"
    STREAM_EVENTS = "stream_events"
    MANAGE_BATCHES = "manage_batches"
    RESET_FACE_ATTEMPTS = "reset_face_attempts"
    EXPORT_CHECK_INS = "export_check_ins"
    EXPORT_FEES = "export_fees"  # masked numbers
    SEE_FULL_NUMBERS = "see_full_numbers"  # full ID and card numbers (fee payment)
    MANAGE_ACCOUNTS = "manage_accounts"
    READ_AUDIT = "read_audit"


_VIEW = frozenset({Permission.VIEW_BATCHES, Permission.VIEW_STATISTICS, Permission.STREAM_EVENTS})
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEW,
    Role.ORGANISER: _VIEW | {Permission.MANAGE_BATCHES, Permission.RESET_FACE_ATTEMPTS, Permission.EXPORT_CHECK_INS},
    Role.FINANCE: _VIEW | {Permission.EXPORT_FEES, Permission.SEE_FULL_NUMBERS},
    Role.ADMIN: frozenset(Permission),
}

# The permission each OrganiserService RPC needs; an RPC missing here is refused to everyone.
RPC_PERMISSIONS: dict[str, Permission] = {
    "ListBatches": Permission.VIEW_BATCHES,
    "CreateBatch": Permission.MANAGE_BATCHES,
    "CloseBatch": Permission.MANAGE_BATCHES,
    "GetBatchStatistics": Permission.VIEW_STATISTICS,
    "StreamCheckInEvents": Permission.STREAM_EVENTS,
    "ResetFaceAttempts": Permission.RESET_FACE_ATTEMPTS,
    "ExportFees": Permission.EXPORT_FEES,  # full numbers need SEE_FULL_NUMBERS as well
    "WhoAmI": Permission.VIEW_BATCHES,
}
# RPCs that read personal data: each call is audited with the person even when it changes nothing.
RPCS_READING_PERSONAL_DATA = frozenset({"StreamCheckInEvents", "ExportFees"})

USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
MAX_USERNAME = 64
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
TOKEN_PREFIX = "eco_"  # noqa: S105  (a marker, not a secret)
SESSION_LIFETIME = dt.timedelta(hours=12)
# scrypt cost: n=2**15, r=8 means 32 MiB and ~0.1 s per hash on a server core.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024


class UnauthenticatedError(PermissionDeniedError):
    """No credential, or one that names nobody (unknown, revoked, expired token; wrong password)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Person:
    """An authenticated organiser person."""

    account_id: int
    username: str
    display_name: str
    role: Role

    @property
    def actor(self) -> str:
        """How the audit log names this person."""
        return f"person:{self.username}"

    def can(self, permission: Permission) -> bool:
        """True if the person's role grants the permission."""
        return permission in ROLE_PERMISSIONS[self.role]


def host_actor(os_user: str, host: str) -> str:
    """How the audit names someone using the CLI's direct database mode on the platform's host."""
    return f"os:{os_user}@{host}"[:64]


def require(uow: UnitOfWork, person: Person, permission: Permission | None, *, what: str, at: dt.datetime) -> None:
    """Raise PermissionDeniedError (audited with the person, committed on its own) unless the role allows it.

    `permission` None: something no role is given (an RPC missing from RPC_PERMISSIONS).
    """
    if permission is not None and person.can(permission):
        return
    needed = permission.value if permission is not None else "unlisted"
    with uow:
        audit.record(
            uow,
            at=at,
            actor=person.actor,
            action="permission_denied",
            outcome=needed,
            detail={"what": what[:100], "role": person.role.value},
        )
        uow.commit()
    raise PermissionDeniedError(f"{person.username} ({person.role}) may not {needed.replace('_', ' ')}: {what}")


def hash_password(password: str) -> str:
    """scrypt$n$r$p$salt$hash (base64)."""
    check_password_rules(password)
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=_SCRYPT_MAXMEM, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def password_matches(password: str, stored: str) -> bool:
    """Check a password against hash_password()'s output (with the cost stored in it)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode("utf-8")[:MAX_PASSWORD],
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def check_password_rules(password: str) -> None:
    """At least MIN_PASSWORD characters (a passphrase is fine), at most MAX_PASSWORD."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidRequestError(f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")


def check_username(username: str) -> None:
    """Lower-case letters, digits, dot, dash, underscore; 1-64 characters."""
    if not username or len(username) > MAX_USERNAME or not set(username) <= USERNAME_CHARS:
        raise InvalidRequestError(
            f"username must be 1 to {MAX_USERNAME} of a-z 0-9 . _ - (got {username[:MAX_USERNAME]!r})"
        )


def token_hash(token: str) -> str:
    """What is stored of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _person(row: Account) -> Person:
    return Person(row.id, row.username, row.display_name, Role(row.role))


def _account(uow: UnitOfWork, username: str) -> Account:
    row = uow.session.scalars(sa.select(Account).where(Account.username == username)).first()
    if row is None:
        raise NotFoundError(f"no account {username!r}")
    return row


def add_account(
    uow: UnitOfWork,
    *,
    username: str,
    role: Role,
    display_name: str = "",
    password: str | None = None,
    actor: str,
    at: dt.datetime,
) -> Person:
    """Create an account (password optional: a token-only account for scripts and the CLI)."""
    check_username(username)
    password_hash = hash_password(password) if password is not None else None
    with uow:
        if uow.session.scalars(sa.select(Account.id).where(Account.username == username)).first() is not None:
            raise AlreadyExistsError(f"account {username!r} exists")
        row = Account(
            username=username,
            display_name=display_name[:100],
            role=role.value,
            password_hash=password_hash,
            disabled=False,
            created_at=at,
            updated_at=at,
        )
        uow.session.add(row)
        uow.session.flush()
        audit.record(
            uow,
            at=at,
            actor=actor,
            action="account_add",
            outcome="created",
            detail={"account": username, "role": role.value},
        )
        uow.commit()
        return _person(row)


@dataclasses.dataclass(frozen=True, slots=True)
class AccountView:
    """An account as `accounts list` shows it."""

    username: str
    display_name: str
    role: Role
    disabled: bool
    has_password: bool
    active_tokens: int


def list_accounts(uow: UnitOfWork, *, at: dt.datetime) -> list[AccountView]:
    """Every account, with how many unrevoked, unexpired tokens it has."""
    live = (
        sa.select(sa.func.count())
        .where(
            AccountToken.account_id == Account.id,
            AccountToken.revoked_at.is_(None),
            sa.or_(AccountToken.expires_at.is_(None), AccountToken.expires_at > at),
        )
        .scalar_subquery()
    )
    with uow:
        rows = uow.execute(
            sa.select(
                Account.username, Account.display_name, Account.role, Account.disabled, Account.password_hash, live
            ).order_by(Account.username)
        ).all()
    return [AccountView(r[0], r[1], Role(r[2]), bool(r[3]), r[4] is not None, int(r[5])) for r in rows]


def set_disabled(uow: UnitOfWork, username: str, *, disabled: bool, actor: str, at: dt.datetime) -> None:
    """Disable (all its tokens revoked at once) or re-enable an account."""
    with uow:
        row = _account(uow, username)
        row.disabled = disabled
        row.updated_at = at
        if disabled:
            uow.execute(
                sa.update(AccountToken)
                .where(AccountToken.account_id == row.id, AccountToken.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        action = "account_disable" if disabled else "account_enable"
        audit.record(uow, at=at, actor=actor, action=action, outcome="done", detail={"account": username})
        uow.commit()


def set_password(uow: UnitOfWork, username: str, password: str, *, actor: str, at: dt.datetime) -> None:
    """Set or replace a person's password."""
    password_hash = hash_password(password)
    with uow:
        row = _account(uow, username)
        row.password_hash = password_hash
        row.updated_at = at
        audit.record(uow, at=at, actor=actor, action="account_password", outcome="set", detail={"account": username})
        uow.commit()


def issue_token(
    uow: UnitOfWork,
    username: str,
    *,
    actor: str,
    at: dt.datetime,
    label: str = "",
    lifetime: dt.timedelta | None = None,
) -> str:
    """A new API token for the person (shown once; only its hash is kept); `lifetime` None: until revoked."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with uow:
        row = _account(uow, username)
        if row.disabled:
            raise InvalidRequestError(f"account {username!r} is disabled")
        uow.session.add(
            AccountToken(
                account_id=row.id,
                token_hash=token_hash(token),
                label=label[:100],
                created_at=at,
                expires_at=at + lifetime if lifetime else None,
            )
        )
        audit.record(
            uow,
            at=at,
            actor=actor,
            action="account_token",
            outcome="issued",
            detail={"account": username, "label": label[:100]},
        )
        uow.commit()
    return token


def revoke_tokens(uow: UnitOfWork, username: str, *, actor: str, at: dt.datetime) -> int:
    """Revoke every token of the person; how many."""
    with uow:
        row = _account(uow, username)
        done = uow.execute(
            sa.update(AccountToken)
            .where(AccountToken.account_id == row.id, AccountToken.revoked_at.is_(None))
            .values(revoked_at=at)
        ).rowcount  # type: ignore[attr-defined]
        audit.record(
            uow,
            at=at,
            actor=actor,
            action="account_revoke",
            outcome="revoked",
            detail={"account": username, "tokens": done},
        )
        uow.commit()
    return int(done)


def authenticate_token(uow: UnitOfWork, token: str, *, at: dt.datetime) -> Person:
    """The person a token belongs to; UnauthenticatedError if none (unknown, revoked, expired, disabled)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise UnauthenticatedError("not an organiser token")
    with uow.read_only() as reader:  # every console page and organiser call: never behind SQLite's writers
        row = reader.execute(
            sa.select(
                Account.id,
                Account.username,
                Account.display_name,
                Account.role,
                Account.disabled,
                AccountToken.revoked_at,
                AccountToken.expires_at,
            )
            .join(AccountToken, AccountToken.account_id == Account.id)
            .where(AccountToken.token_hash == token_hash(token))
        ).first()
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= at):
        raise UnauthenticatedError("unknown, revoked or expired organiser token")
    if row.disabled:
        raise UnauthenticatedError(f"account {row.username!r} is disabled")
    return Person(int(row.id), str(row.username), str(row.display_name), Role(row.role))


def login(uow: UnitOfWork, username: str, password: str, *, at: dt.datetime) -> tuple[Person, str]:
    """Check a password and open a session: a token that ends after SESSION_LIFETIME (for the web console).

    A wrong password and an unknown name take the same time and give the same answer.
    """
    with uow:
        row = uow.session.scalars(sa.select(Account).where(Account.username == username[:MAX_USERNAME])).first()
        person = _person(row) if row is not None else None
        stored = row.password_hash if row is not None else None
        disabled = row.disabled if row is not None else True
    # An unknown name still pays for one scrypt, so timing does not tell names apart.
    ok = password_matches(password, stored or _DUMMY_HASH) and stored is not None
    if person is None or not ok or disabled:
        with uow:
            audit.record(uow, at=at, actor=f"login:{username[:40]}", action="login", outcome="refused")
            uow.commit()
        raise UnauthenticatedError("wrong name or password")
    token = issue_token(uow, person.username, actor=person.actor, at=at, label="session", lifetime=SESSION_LIFETIME)
    return person, token


def logout(uow: UnitOfWork, token: str, *, at: dt.datetime) -> None:
    """End a session (or revoke one API token) by the token itself; unknown tokens are ignored."""
    with uow:
        uow.execute(
            sa.update(AccountToken)
            .where(AccountToken.token_hash == token_hash(token), AccountToken.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        uow.commit()


_DUMMY_HASH = "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
