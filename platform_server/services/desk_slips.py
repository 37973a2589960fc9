"""The desk's slips: look a 签到凭证 up by its code and reprint it on the console's desk printer.

The reprint is the kiosk's layout (receipt_printer.slip_layout) marked 补打 / Reprint, built from
what the platform stored (masked ID and card only); every reprint is audited with the person.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import sqlalchemy as sa

from platform_server.db.models import Batch, CheckIn
from platform_server.errors import InvalidRequestError, PlatformError
from platform_server.services import audit, slips
from receipt_printer.driver import ReceiptPrinter
from receipt_printer.errors import PrinterError
from receipt_printer.slip_layout import SlipContent, build_slip

if TYPE_CHECKING:
    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext
    from receipt_printer.models import Receipt

CHINA = dt.timezone(dt.timedelta(hours=8))


class DeskPrinterError(PlatformError):
    """The desk printer is not configured, offline, out of paper or its cover is open."""


def _time(value: dt.datetime) -> str:
    aware = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
    return aware.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


def desk_slip(uow: UnitOfWork, slip: slips.SlipView) -> SlipContent:
    """The slip's printed facts from a looked-up slip (batch name and masked card read here)."""
    ci = slip.check_in
    with uow:
        row = uow.execute(
            sa.select(Batch.name, CheckIn.bank_card_masked)
            .join(Batch, Batch.id == CheckIn.batch_id)
            .where(CheckIn.public_id == ci.check_in_id)
        ).one()
    return SlipContent(
        batch_code=ci.batch_code,
        batch_name=row[0],
        expert_name=ci.expert_name,
        id_number_masked=ci.id_number_masked,
        kiosk_id=ci.kiosk_id,
        slip_serial=ci.slip_serial,
        checked_in_at=_time(ci.checked_in_at),
        hotel_name=ci.hotel_name,
        room_number=ci.room_number,
        evaluation_venue=ci.evaluation_venue,
        evaluation_start=_time(ci.evaluation_start),
        band_tag_id=ci.uwb_tag_id,
        card_masked=row[1],
        slip_code=slip.code,
    )


def reprint(
    uow: UnitOfWork, ctx: ServiceContext, printer_url: str, code_text: str, *, actor: str, timeout_s: float = 2.0
) -> SlipContent:
    """Look the slip up (audited), print it at the desk printer and audit the reprint (or its failure).

    Raises:
        DeskPrinterError: no desk printer configured, or it could not print.
        InvalidRequestError: the code is not a slip code; NotFoundError: no slip has it.

    """
    if not printer_url:
        raise DeskPrinterError("未配置服务台打印机 / no desk printer (PLATFORM_CONSOLE_DESK_PRINTER)")
    slip = slips.look_up_slip(uow, ctx, code_text, actor=actor)
    if not slip.valid:
        raise InvalidRequestError(
            f"凭证 {slips.display_code(slip.code)} 的签到已撤销，不能补打 / the check-in was annulled: no reprint"
        )
    facts = desk_slip(uow, slip)
    problem = print_receipt(printer_url, build_slip(facts, reprint=True), timeout_s=timeout_s)
    with uow:
        audit.record(
            uow,
            at=ctx.clock(),
            actor=actor,
            action="slip_reprint",
            outcome="failed" if problem else "printed",
            batch_code=facts.batch_code,
            id_masked=facts.id_number_masked,
            check_in_public_id=slip.check_in.check_in_id,
            detail={"code": slip.code, "printer": printer_url, **({"problem": problem} if problem else {})},
        )
        uow.commit()
    if problem:
        raise DeskPrinterError(f"服务台打印机未能打印 / the desk printer did not print: {problem}")
    return facts


def print_receipt(url: str, receipt: Receipt, *, timeout_s: float) -> str:
    """Print one receipt at `url`; "" when done, else what went wrong."""
    try:
        printer = ReceiptPrinter.open(url, timeout=timeout_s, print_timeout=max(timeout_s, 20.0))
    except PrinterError as err:
        return f"{type(err).__name__}: {err}"
    try:
        printer.print_receipt(receipt)
    except PrinterError as err:
        return f"{type(err).__name__}: {err}"
    finally:
        printer.close()
    return ""
