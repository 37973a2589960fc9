"""`checkin-kiosk sim`: device simulators as processes, for the demo and for technicians.

- `sim id-card`: the SAM ID card reader on socket://HOST:PORT (or a pty), with a control channel.
- `sim cards`: one virtual card (bank card or wristband) on a vpcd port of a running pcscd.
- `sim pcscd`: a private pcscd with the vpcd driver, optionally with cards already inserted.

Each runs until Ctrl-C or SIGTERM, prints one line saying where it is, and exits with a one-line
reason (never a traceback) when it cannot start.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path  # noqa: TC003 - Typer reads the annotations at run time
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

# Lazy (lazy_imports): a simulator loads when its command runs, not for --help.
import band_reader.simulator as band_sim
import bank_card_reader.simulator as bank_sim
import id_card_reader.simulator as id_card_sim
import pcsc
from device_kit.cli import EXIT_INPUT, add_sim_ctl, fail, parse_control_port, parse_host_port, wait_for_signal
from personal_data import bank_card as pan_rules

if TYPE_CHECKING:
    from pcsc.vpcd import VirtualCard

app = typer.Typer(no_args_is_help=True, help="设备模拟器 / Device simulators (ID card reader, virtual PC/SC cards).")
add_sim_ctl(app)  # checkin-kiosk sim sim-ctl --control HOST:PORT faults | status | clear | NAME key=value

VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log the simulated wire traffic to stderr.")]


def _fail(reason: str) -> NoReturn:
    fail(EXIT_INPUT, f"无法启动 / cannot start: {' '.join(reason.split())}")


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(message)s",
    )


@app.command("id-card")
def id_card(  # noqa: PLR0917 - Typer maps options to parameters
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to serve the reader on (port 0: any).")] = (
        "127.0.0.1:7101"
    ),
    identities: Annotated[
        Path | None, typer.Option("--identities", help="JSON identities file (default: the bundled samples).")
    ] = None,
    fault: Annotated[
        list[str] | None, typer.Option("--fault", help=r"Arm a fault: NAME[:VALUE]\[@COUNT|@always]; repeatable.")
    ] = None,
    control: Annotated[
        str | None, typer.Option("--control", help="HOST:PORT for the JSON-lines control channel.")
    ] = None,
    present: Annotated[str, typer.Option("--present", help="Identity index on the reader at start, or 'none'.")] = "0",
    pty: Annotated[bool, typer.Option("--pty", help="Serve on a pseudo-terminal instead of TCP.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """模拟身份证阅读器 / Run the SAM ID card reader simulator."""
    _logging(verbose)
    host, port = parse_host_port(listen, "--listen")
    if present != "none" and not present.isdigit():
        raise typer.BadParameter(f"--present must be an identity index or 'none', got {present!r}")
    try:
        cards = id_card_sim.load_identities(identities or id_card_sim.SAMPLE_IDENTITIES)
        emulator = id_card_sim.SamReaderEmulator(cards, present=None, faults=fault or ())
        if present != "none":
            emulator.place(int(present))
        control_port = parse_control_port(control, host)
        simulator = id_card_sim.SamReaderSimulator(
            emulator, host=host, port=port, pty=pty, control_port=control_port
        ).start()
    except id_card_sim.SimulatorConfigError as err:
        _fail(str(err))
    except OSError as err:
        _fail(f"{listen}: {err.strerror or err}")
    info: dict[str, Any] = {"url": simulator.url, "identities": len(cards), "faults": fault or []}
    if simulator.control_address is not None:
        info["control"] = "{}:{}".format(*simulator.control_address)
    typer.echo(json.dumps(info, ensure_ascii=False), nl=True)
    sys.stdout.flush()
    try:
        wait_for_signal()
    finally:
        simulator.stop()


def _card_for(band: str | None, bank_card: str | None, kind: str, dead: bool, holder: str | None) -> VirtualCard:
    chosen = [x for x in (band, bank_card, dead or None) if x]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --band UID, --bank-card PAN or --dead")
    if band is not None:
        try:
            return band_sim.MifareBand(band)
        except ValueError as err:
            raise typer.BadParameter(f"--band: {err}") from None
    if dead:
        return bank_sim.DeadCard()
    assert bank_card is not None
    try:
        pan = pan_rules.validate(bank_card)
    except pan_rules.InvalidCardNumberError as err:
        raise typer.BadParameter(f"--bank-card: {err}") from None
    match kind:
        case "unionpay":
            return bank_sim.UnionPayDebitCard(pan, holder_name=holder)
        case "contactless":
            return bank_sim.UnionPayDebitCard(pan, holder_name=holder, contactless=True)
        case "other":
            return bank_sim.OtherLayoutCard(pan)
        case "chaining":
            return bank_sim.ChainingCard(pan, holder_name=holder)
    raise typer.BadParameter(f"--kind must be unionpay, contactless, other or chaining, got {kind!r}")


BandOption = Annotated[str | None, typer.Option("--band", help="Insert a MIFARE wristband with this UID (hex).")]
BankOption = Annotated[str | None, typer.Option("--bank-card", help="Insert a bank card with this PAN.")]
KindOption = Annotated[str, typer.Option("--kind", help="Bank card layout: unionpay, contactless, other, chaining.")]
HolderOption = Annotated[str | None, typer.Option("--holder", help="Cardholder name on the chip (ASCII).")]


@app.command("cards")
def cards(  # noqa: PLR0917 - Typer maps options to parameters
    vpcd_port: Annotated[int, typer.Option("--vpcd-port", min=1, max=65535, help="vpcd slot port (35963/35964).")],
    vpcd_host: Annotated[str, typer.Option("--vpcd-host", help="Host where pcscd's vpcd listens.")] = "127.0.0.1",
    band: BandOption = None,
    bank_card: BankOption = None,
    kind: KindOption = "unionpay",
    holder: HolderOption = "ZHANG/WEIMIN",
    dead: Annotated[bool, typer.Option("--dead", help="Insert a dead card (6F00 to everything).")] = False,
    verbose: VerboseOption = False,
) -> None:
    """插入虚拟卡 / Keep one virtual card in a vpcd slot of a running pcscd until stopped."""
    _logging(verbose)
    card = _card_for(band, bank_card, kind, dead, holder)
    slot = pcsc.VirtualCardSlot(vpcd_host, vpcd_port)
    try:
        slot.insert(card, wait=True)
    except pcsc.VirtualCardError as err:
        _fail(str(err))
    typer.echo(json.dumps({"vpcd": f"{vpcd_host}:{vpcd_port}", "card": type(card).__name__}))
    sys.stdout.flush()
    try:
        wait_for_signal()
    finally:
        slot.remove()


@app.command("pcscd")
def pcscd(  # noqa: PLR0917 - Typer maps options to parameters
    band: BandOption = None,
    bank_card: BankOption = None,
    kind: KindOption = "unionpay",
    holder: HolderOption = "ZHANG/WEIMIN",
    debug: Annotated[
        bool, typer.Option("--debug", help="Run pcscd with --debug --apdu (log in its work dir).")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """私有pcscd / Run a private pcscd with the vpcd driver (slot 0: band, slot 1: bank card)."""
    _logging(verbose)
    band_card = _card_for(band, None, kind, False, holder) if band else None  # noqa: FBT003
    bank = _card_for(None, bank_card, kind, False, holder) if bank_card else None  # noqa: FBT003
    daemon = pcsc.PcscDaemon(debug=debug)
    try:
        daemon.start()
        if band_card is not None:
            daemon.slot(0).insert(band_card, wait=True)
        if bank is not None:
            daemon.slot(1).insert(bank, wait=True)
    except (pcsc.PcscDaemonError, pcsc.VirtualCardError) as err:
        daemon.stop()
        _fail(str(err))
    info = {
        "PCSCLITE_CSOCK_NAME": str(daemon.socket_path),
        "readers": [{"name": s.reader_name, "vpcd_port": s.port} for s in daemon.slots],
    }
    typer.echo(json.dumps(info, ensure_ascii=False))
    sys.stdout.flush()
    try:
        wait_for_signal()
    finally:
        daemon.stop()
