"""Check-in slips (签到凭证): the verification code printed as the slip's QR code, and looking it up.

The code is random (8 characters from an alphabet without 0/O, 1/I/L), carries no personal data and
is stored with the check-in; the desk (``platform-server slips show CODE``, later the web console)
resolves it to the check-in, masked, and says whether it still stands. Each look-up is audited.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.models import CheckIn
from platform_server.errors import InvalidRequestError, NotFoundError
from platform_server.services import audit
from platform_server.services.views import CheckInView, check_in_views

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

#: Crockford-like: no 0/O, 1/I/L, U, so a code read aloud or typed from paper is not misread.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8
_CODE = re.compile(f"^[{ALPHABET}]{{{CODE_LENGTH}}}$")


def new_slip_code() -> str:
    """A fresh random code (30^8, about 6.6e11 values: a guess hits no slip in practice)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str) -> str:
    """A code as typed or scanned (any case, with spaces or a dash) in its stored form; InvalidRequestError if none."""
    code = re.sub(r"[\s-]", "", text).upper()
    if not _CODE.match(code):
        raise InvalidRequestError(
            f"凭证验证码须为 {CODE_LENGTH} 位 / a slip code is {CODE_LENGTH} characters from {ALPHABET}, got {text!r}"
        )
    return code


def display_code(code: str) -> str:
    """The code as printed: two groups of four (K7M2-P9QX)."""
    return f"{code[:4]}-{code[4:]}" if len(code) == CODE_LENGTH else code


def next_serial(uow: UnitOfWork, kiosk_id: str) -> int:
    """The kiosk's next slip number (1, 2, ...), in the caller's transaction."""
    current = uow.execute(sa.select(sa.func.max(CheckIn.slip_serial)).where(CheckIn.kiosk_id == kiosk_id)).scalar()
    return int(current or 0) + 1


@dataclass(frozen=True, slots=True)
class SlipView:
    """What the desk sees for a slip: the check-in (masked) and whether it still stands."""

    code: str
    check_in: CheckInView

    @property
    def valid(self) -> bool:
        """False once the check-in was annulled (band not taken, staff undo)."""
        return not self.check_in.annulled


def look_up_slip(uow: UnitOfWork, ctx: ServiceContext, text: str, *, actor: str = "organiser") -> SlipView:
    """The check-in behind a slip's code; NotFoundError when no slip has it. Audited."""
    code = normalise_code(text)
    with uow:
        views = check_in_views(uow, CheckIn.slip_code == code, ctx.rules.annul_window_s)
        found = views[0] if views else None
        audit.record(
            uow,
            at=ctx.clock(),
            actor=actor,
            action="slip_look_up",
            outcome="found" if found else "not_found",
            batch_code=found.batch_code if found else None,
            check_in_public_id=found.check_in_id if found else None,
            detail={"code": code},
        )
        uow.commit()
    if found is None:
        raise NotFoundError(f"无此凭证 / no slip with code {display_code(code)}")
    return SlipView(code, found)
