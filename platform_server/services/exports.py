"""Exports for organisers and finance: check-ins (xlsx/csv/json) and the fee-payment list.

Card and ID numbers are masked unless `full_numbers` is asked for (finance pays the fee to the card);
a full export is audit-logged and written readable by its owner only.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import TYPE_CHECKING, Any

import openpyxl
import sqlalchemy as sa

from personal_data.crypto import decrypt_text
from platform_server.db.models import Batch, CheckIn, Expert, Invitation
from platform_server.errors import InvalidRequestError
from platform_server.services import audit, roster
from platform_server.services.formula_cells import FORMULA_STARTS, neutralised
from platform_server.services.identify import china_time
from platform_server.services.views import check_in_views

if TYPE_CHECKING:
    from pathlib import Path

    from platform_server.db.unit_of_work import UnitOfWork
    from platform_server.services.context import ServiceContext

FORMATS = ("xlsx", "csv", "json")
CHECK_IN_HEADER = [
    "签到编号 check_in_id",
    "姓名 name",
    "身份证号 id_number",
    "终端 kiosk",
    "签到时间 checked_in_at",
    "酒店 hotel",
    "房间 room",
    "手环 band_uid",
    "UWB标签 uwb_tag",
    "UWB写入 uwb_state",
    "已撤销 annulled",
    "需人工 needs_staff",
]
FEE_HEADER = [
    "姓名 name",
    "身份证号 id_number",
    "工作单位 organisation",
    "银行 bank",
    "银行卡号 card_number",
    "签到时间 checked_in_at",
]


def check_in_rows(uow: UnitOfWork, ctx: ServiceContext, batch_code: str) -> list[list[Any]]:
    """Every check-in of the batch (annulled ones too), masked."""
    with uow:
        batch_id = uow.execute(sa.select(Batch.id).where(Batch.code == batch_code)).scalar_one_or_none()
        if batch_id is None:
            raise InvalidRequestError(f"批次 {batch_code} 不存在 / batch {batch_code} does not exist")
        views = check_in_views(uow, CheckIn.batch_id == batch_id, ctx.rules.annul_window_s)
    return [
        [
            v.check_in_id,
            v.expert_name,
            v.id_number_masked,
            v.kiosk_id,
            china_time(v.checked_in_at),
            v.hotel_name,
            v.room_number,
            v.band_uid,
            v.uwb_tag_id,
            v.uwb_state.value,
            v.annulled,
            v.needs_staff,
        ]
        for v in views
    ]


def fee_rows(
    uow: UnitOfWork, ctx: ServiceContext, batch_code: str, *, full_numbers: bool, actor: str = "cli"
) -> list[list[Any]]:
    """One row per expert with an active check-in: who to pay and to which card."""
    with uow:
        rows = uow.execute(
            sa.select(
                Expert.name,
                Expert.id_masked,
                Expert.id_hash,
                Expert.pii_page_id,
                Expert.pii_slot,
                Expert.pii_encrypted,
                Expert.organisation,
                Expert.bank_name,
                CheckIn.bank_card_masked,
                CheckIn.bank_card_encrypted,
                CheckIn.checked_in_at,
            )
            .join(Invitation, Invitation.id == CheckIn.invitation_id)
            .join(Expert, Expert.id == Invitation.expert_id)
            .join(Batch, Batch.id == CheckIn.batch_id)
            .where(Batch.code == batch_code, CheckIn.annulled_at.is_(None))
            .order_by(CheckIn.checked_in_at)
        ).all()
        # Full ID numbers come out of their sealed pages (each page opened once) or pre-page blobs.
        ids = (
            roster.personal_numbers(uow, ctx.data_key, [roster.StoredPii(r[2], r[3], r[4], r[5]) for r in rows])
            if full_numbers
            else []
        )
        if full_numbers:
            audit.record(
                uow,
                at=ctx.clock(),
                actor=actor,
                action="export_fees_full",
                outcome="exported",
                batch_code=batch_code,
                detail={"rows": len(rows)},
            )
            uow.commit()
    out = []
    for i, (name, id_masked, id_hash, _page, _slot, _pii, organisation, bank, card_masked, card_blob, at) in enumerate(
        rows
    ):
        id_text, card_text = id_masked, card_masked
        if full_numbers:
            id_text = ids[i][0]
            card_text = decrypt_text(ctx.data_key, card_blob, associated=id_hash)
        out.append([name, id_text, organisation, bank or "", card_text, china_time(at)])
    return out


def _xlsx_cell(sheet: Any, value: Any) -> Any:
    """A text cell written as an explicit string, marked quote-prefixed as Excel marks text typed after '."""
    if not isinstance(value, str):
        return value
    cell = openpyxl.cell.WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"  # openpyxl would otherwise store a value starting with = as a formula
    if value.startswith(FORMULA_STARTS):
        cell.quotePrefix = True
    return cell


def write_table(path: Path, fmt: str, header: list[str], rows: list[list[Any]], *, private: bool = False) -> None:
    """Write rows as xlsx, csv (UTF-8 with BOM so Excel opens it) or json; owner-only if private."""
    if fmt not in FORMATS:
        raise InvalidRequestError(f"format must be one of {', '.join(FORMATS)}")
    if fmt == "json":
        keys = [h.split(" ")[-1] for h in header]
        data = json.dumps([dict(zip(keys, r, strict=True)) for r in rows], ensure_ascii=False, indent=1).encode()
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows([neutralised(c) for c in row] for row in rows)
        data = buffer.getvalue().encode("utf-8-sig")
    else:
        workbook = openpyxl.Workbook(write_only=True)
        sheet = workbook.create_sheet()
        sheet.append(header)
        for row in rows:
            sheet.append([_xlsx_cell(sheet, c) for c in row])
        buffer_b = io.BytesIO()
        workbook.save(buffer_b)
        data = buffer_b.getvalue()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    with os.fdopen(os.open(path, flags, 0o600 if private else 0o644), "wb") as handle:
        handle.write(data)
