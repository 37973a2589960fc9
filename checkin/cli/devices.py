"""`checkin-kiosk devices`: technician diagnostics for the card readers.

Each command prints one JSON object with --json (readable text otherwise), exits 0 on success and
non-zero with a one-line reason otherwise, never a traceback. ID and card numbers are masked.
Exit codes: 1 device error, 3 reader not reachable, 4 no card/band in time, 5 invalid card data.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
from serial.tools import list_ports

# Lazy (lazy_imports): a device library loads when its command runs, not for --help.
import band_reader
import band_reader.errors as band_errors
import bank_card_reader
import bank_card_reader.errors as bank_errors
import id_card_reader
import id_card_reader.errors as id_card_errors
import pcsc
import pcsc.errors as pcsc_errors
from device_kit.cli import EXIT_NEEDS_PERSON, EXIT_PROTOCOL, EXIT_UNREACHABLE

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

app = typer.Typer(no_args_is_help=True, help="读卡器诊断 / Card reader diagnostics (ID card, bank card, wristband).")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, max=300.0, help="Seconds to wait for a card to be presented.")
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log reader traffic to stderr (numbers masked).")]

#: The device kit's exit codes (docs/device-kit.md): a device that answered but cannot read (SAM
#: fault, card removed or unreadable) or has nothing to read needs a person; invalid data or
#: frames are the protocol code.
EXIT_DEVICE = EXIT_NEEDS_PERSON
EXIT_NO_CARD = EXIT_NEEDS_PERSON
EXIT_INVALID_DATA = EXIT_PROTOCOL


@dataclass(frozen=True, slots=True)
class Failure:
    """A diagnostic that failed: exit code, stable error key and one-line reason."""

    code: int
    key: str
    reason: str


def mask_name(name: str | None) -> str | None:
    """First character only: 张** (a name is personal data, the diagnostic only proves it was read)."""
    if not name:
        return None
    return name[0] + "*" * (len(name) - 1)


def _classify(err: Exception) -> Failure:
    """Map a device library's error to an exit code (the one place that does it)."""
    band, bank, idc, pcsc = band_errors, bank_errors, id_card_errors, pcsc_errors
    unreachable = (
        idc.IdCardConnectionError,
        bank.ReaderUnavailableError,
        band.BandReaderUnavailableError,
        pcsc.PcscServiceUnavailableError,
        pcsc.ReaderNotFoundError,
    )
    no_card = (idc.NoCardError, bank.NoCardPresentError, band.NoBandError)
    invalid = (
        idc.IdentityDataError,
        idc.IdCardProtocolError,
        bank.InvalidCardNumberError,
        bank.CardDataError,
        band.BandProtocolError,
    )
    reason = " ".join(str(err).split()) or type(err).__name__
    key = str(getattr(err, "key", "device_error"))
    if isinstance(err, unreachable):
        return Failure(EXIT_UNREACHABLE, key, reason)
    if isinstance(err, no_card):
        return Failure(EXIT_NO_CARD, key, reason)
    if isinstance(err, invalid):
        return Failure(EXIT_INVALID_DATA, key, reason)
    return Failure(EXIT_DEVICE, key, reason)


def _device_errors() -> tuple[type[Exception], ...]:
    return (id_card_errors.IdCardError, bank_errors.BankCardError, band_errors.BandReaderError, pcsc_errors.PcscError)


def _emit(result: dict[str, Any], *, as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        typer.echo(text(result))


@contextmanager
def _diagnostic(command: str, *, as_json: bool, verbose: bool) -> Iterator[dict[str, Any]]:
    """Run a diagnostic body; turn device errors into a one-line reason and an exit code."""
    if verbose:
        logging.basicConfig(
            level=logging.DEBUG, stream=sys.stderr, format="%(relativeCreated)6.0f %(name)s %(message)s"
        )
    else:
        # Retries are logged as warnings by the drivers; a diagnostic shows only its result line.
        logging.getLogger().addHandler(logging.NullHandler())
    result: dict[str, Any] = {"ok": True, "command": command}
    started = time.monotonic()
    try:
        yield result
    except _device_errors() as err:
        failure = _classify(err)
        if as_json:
            payload = {"ok": False, "command": command, "error": failure.key, "reason": failure.reason}
            payload["elapsed_ms"] = round((time.monotonic() - started) * 1000)
            typer.echo(json.dumps(payload, ensure_ascii=False))
        else:
            typer.echo(f"失败 / failed: {failure.reason}", err=True)
        raise typer.Exit(failure.code) from None
    result["elapsed_ms"] = round((time.monotonic() - started) * 1000)


def _id_text(r: dict[str, Any]) -> str:
    card = r["card"]
    valid_to = card["valid_to"] or "长期"
    return (
        f"身份证阅读器 / ID card reader {r['port']}: SAM {r['sam_status']}, SAM ID {r['sam_id']}\n"
        f"  公民身份号码 / ID number: {card['id_number']}   姓名 / name: {card['name']}\n"
        f"  性别 / sex: {card['sex']}   民族 / nation: {card['nation']}\n"
        f"  有效期限 / valid: {card['valid_from']} - {valid_to}"
        f"{'   已过期 / EXPIRED' if card['expired'] else ''}\n"
        f"  照片 / photo: {card['photo_wlt_bytes']} bytes WLT   重试 / retries: {r['retries']}   {r['elapsed_ms']} ms"
    )


@app.command("read-id")
def read_id(
    port: Annotated[
        str,
        typer.Option(
            "--port",
            envvar="KIOSK_ID_CARD_PORT",
            help="pyserial URL: /dev/ttyUSB0, socket://127.0.0.1:7101, /dev/pts/3.",
        ),
    ],
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """读身份证 / Read the ID card on the SAM reader at PORT (status, SAM ID, identity)."""
    with (
        _diagnostic("read-id", as_json=as_json, verbose=verbose) as result,
        id_card_reader.IdCardReader.open(port) as reader,
    ):
        status = reader.status()
        sam_id = reader.sam_id()
        card = reader.read_identity(timeout)
        result.update(
            port=port,
            sam_status=f"{status.sw3:02X}",
            sam_id=sam_id,
            retries=reader.retries,
            card={
                "id_number": card.masked_id_number,
                "name": mask_name(card.name),
                "sex": card.sex_name,
                "nation": card.nation_name,
                "valid_from": card.valid_from.isoformat(),
                "valid_to": None if card.valid_to is None else card.valid_to.isoformat(),
                "expired": card.is_expired(dt.date.today()),  # noqa: DTZ011 - the kiosk's local day
                "photo_wlt_bytes": len(card.photo_wlt),
            },
        )
    _emit(result, as_json=as_json, text=_id_text)


ReaderOption = Annotated[
    str | None,
    typer.Option("--reader", help="PC/SC reader name or a unique part of it (default: the reader a card is in)."),
]


@app.command("read-bank-card")
def read_bank_card(
    reader: ReaderOption = None,
    timeout: TimeoutOption = 10.0,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """读银行卡 / Read the bank card inserted or tapped on a PC/SC reader (number masked)."""
    with _diagnostic("read-bank-card", as_json=as_json, verbose=verbose) as result:
        data = bank_card_reader.BankCardReader(reader).read_card(timeout)
        result.update(
            reader=reader,
            pan=data.masked,
            expiry=data.expiry_yymm,
            holder_name=mask_name(data.holder_name),
            source=data.source,
            aid=data.aid,
        )

    def text(r: dict[str, Any]) -> str:
        return (
            f"银行卡 / bank card: {r['pan']}  有效期 / expiry {r['expiry'] or '-'}  "
            f"持卡人 / holder {r['holder_name'] or '-'}  ({r['source']}, AID {r['aid']}, {r['elapsed_ms']} ms)"
        )

    _emit(result, as_json=as_json, text=text)


@app.command("read-band")
def read_band(
    reader: ReaderOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """读手环UID / Read the UID of the wristband on a contactless PC/SC reader."""
    with _diagnostic("read-band", as_json=as_json, verbose=verbose) as result:
        uid = band_reader.BandUidReader(reader).read_uid(timeout)
        result.update(reader=reader, uid=uid)
    _emit(result, as_json=as_json, text=lambda r: f"手环 / band UID: {r['uid']}  ({r['elapsed_ms']} ms)")


@app.command("list")
def list_devices(as_json: JsonOption = False, verbose: VerboseOption = False) -> None:
    """列出设备 / List serial ports (ID card reader) and PC/SC readers (bank card, wristband)."""
    with _diagnostic("list", as_json=as_json, verbose=verbose) as result:
        result["serial_ports"] = [
            {"device": p.device, "description": p.description, "hwid": p.hwid} for p in sorted(list_ports.comports())
        ]
        readers = []
        with pcsc.PcscContext() as context:
            for name in context.reader_names():
                present, atr = context.card_state(name)
                atr_text = atr.hex(" ").upper() if present else None
                readers.append({"name": name, "card_present": present, "atr": atr_text})
        result["pcsc_readers"] = readers

    def text(r: dict[str, Any]) -> str:
        lines = ["串口 / serial ports:"]
        lines += [f"  {p['device']}  {p['description']}  {p['hwid']}" for p in r["serial_ports"]] or ["  (none)"]
        lines.append("PC/SC 读卡器 / readers:")
        lines += [
            f"  {p['name']}  {'card ' + p['atr'] if p['card_present'] else 'no card'}" for p in r["pcsc_readers"]
        ] or ["  (none)"]
        return "\n".join(lines)

    _emit(result, as_json=as_json, text=text)
