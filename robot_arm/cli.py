"""`robot-arm`: bring-up and diagnostics of the wristband arm, and its simulator.

    robot-arm --port URL status [--json] | home | clear | self-test | dispense-one
    robot-arm sim --listen HOST:PORT [--fault NAME ...] [--speed X] [--bands UID,...]

Device and config errors print one line and exit non-zero (2 config, 3 link, 4 the arm refused or
faulted, 1 a check that ran and failed); no tracebacks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path  # noqa: TC003  # Typer reads the annotation at run time
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from robot_arm.dispenser import WristbandDispenser
from robot_arm.driver import ArmDriver
from robot_arm.errors import ArmCommandError, ArmConfigError, ArmConnectionError, ArmError, ArmTimeoutError
from robot_arm.models import BindDecision, DispenseOutcome, DispenseProgress, DispenseReason, normalise_uid
from robot_arm.protocol import ArmStatus, Station
from robot_arm.simulator import FAULTS, ArmSimulator, SimSettings, default_bands

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

EXIT_FAILED: Final = 1
EXIT_CONFIG: Final = 2
EXIT_LINK: Final = 3
EXIT_DEVICE: Final = 4

app = typer.Typer(
    name="robot-arm",
    help="手环发放机械臂 / Wristband dispenser arm: bring-up, diagnostics and simulator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@dataclass(frozen=True, slots=True)
class _Options:
    port: str | None
    command_timeout: float
    motion_timeout: float


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"robot-arm: {message}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def _device_errors() -> Iterator[None]:
    """Map the arm's errors to one line and an exit code: the single place the CLI does so."""
    try:
        yield
    except ArmConfigError as err:
        raise _fail(f"config error: {err}", EXIT_CONFIG) from None
    except (ArmConnectionError, ArmTimeoutError) as err:
        raise _fail(f"link error: {err}", EXIT_LINK) from None
    except ArmCommandError as err:
        raise _fail(f"arm error: {err}", EXIT_DEVICE) from None
    except ArmError as err:
        raise _fail(f"arm error: {err}", EXIT_DEVICE) from None


@app.callback()
def main_options(
    ctx: typer.Context,
    port: Annotated[
        str | None,
        typer.Option("--port", "-p", envvar="ROBOT_ARM_PORT", help="Serial port or URL (socket://127.0.0.1:7001)."),
    ] = None,
    command_timeout: Annotated[float, typer.Option(help="Seconds to wait for a reply.")] = 1.0,
    motion_timeout: Annotated[float, typer.Option(help="Seconds one motion may take.")] = 20.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log, including the wire traffic.")] = False,
) -> None:
    """手环发放机械臂 / Wristband dispenser arm."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.ERROR,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = _Options(port, command_timeout, motion_timeout)


@contextlib.contextmanager
def _arm(ctx: typer.Context) -> Iterator[ArmDriver]:
    options: _Options = ctx.obj
    if not options.port:
        raise _fail("no arm port: give --port URL or set ROBOT_ARM_PORT", EXIT_CONFIG)
    with _device_errors():
        driver = ArmDriver.open(
            options.port, command_timeout=options.command_timeout, motion_timeout=options.motion_timeout
        )
        try:
            yield driver
        finally:
            driver.close()


def _status_dict(status: ArmStatus) -> dict[str, Any]:
    data = dataclasses.asdict(status)
    for key, value in data.items():
        if isinstance(value, Enum):
            data[key] = value.value if not isinstance(value.value, int) else int(value.value)
    data["ready"] = status.ready
    return data


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _status_lines(status: ArmStatus) -> list[str]:
    alarm = f"E{int(status.alarm)} {status.alarm.description}" if status.alarm else "无 / none"
    return [
        f"状态 / state:          {status.state.value}{'  (ready)' if status.ready else ''}",
        f"位置 / position:       {status.position.value if status.position else '-'}  homed={_yes(status.homed)}",
        f"夹爪 / gripper:        {'closed' if status.gripper_closed else 'open'}  holding={_yes(status.holding)}",
        f"库存 / stock:          {status.stock}",
        f"废料盒 / reject bin:   {status.reject_count}",
        f"出口 / pickup slot:    {'band' if status.pickup_occupied else 'empty'}",
        f"维护门 / door:         {'OPEN' if status.door_open else 'closed'}",
        f"急停 / e-stop:         {'PRESSED' if status.estop else 'released'}",
        f"报警 / alarm:          {alarm}",
        f"启动次数 / boot:       {status.boot}",
    ]


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Report position, gripper, band held, stock, pickup sensor, door, e-stop and alarms."""
    with _arm(ctx) as arm, _device_errors():
        current = arm.status()
        info = arm.info()
    if as_json:
        typer.echo(json.dumps({**_status_dict(current), "model": info.model, "firmware": info.firmware}))
        return
    typer.echo(f"{info.model} firmware {info.firmware} serial {info.serial} ({ctx.obj.port})")
    for line in _status_lines(current):
        typer.echo(line)


@app.command()
def home(ctx: typer.Context) -> None:
    """Home the axes (after power-up, e-stop, door or jam)."""
    with _arm(ctx) as arm, _device_errors():
        arm.home()
        typer.echo("homed")


@app.command()
def clear(ctx: typer.Context) -> None:
    """Clear a latched alarm (the e-stop must be released and the door closed)."""
    with _arm(ctx) as arm, _device_errors():
        arm.clear()
        typer.echo("alarm cleared")


@app.command("self-test")
def self_test(ctx: typer.Context) -> None:
    """Home, pick a band, show it to the reader and return it to stock; exit 0 only if all of it worked."""
    steps: list[tuple[str, Callable[[ArmDriver], object]]] = [
        ("回零 / home", lambda a: a.home()),
        ("取手环 / pick", lambda a: a.pick()),
        ("到读卡位 / move to reader", lambda a: a.move(Station.READER)),
        ("回库存 / move to stock", lambda a: a.move(Station.STOCK)),
        ("放回 / release into stock", lambda a: a.release()),
        ("停靠 / park", lambda a: a.move(Station.HOME)),
    ]
    with _arm(ctx) as arm:
        try:
            before = arm.status()
        except ArmError as err:
            raise _fail(f"cannot read status: {err}", EXIT_LINK) from None
        if before.holding or before.estop or before.door_open or before.alarm is not None:
            typer.echo(f"FAIL: arm not in a state to test: {_short(before)}")
            raise typer.Exit(EXIT_FAILED)
        for name, step in steps:
            try:
                step(arm)
            except ArmError as err:
                typer.echo(f"FAIL  {name}: {err}")
                raise typer.Exit(EXIT_FAILED) from None
            typer.echo(f"ok    {name}")
        after = arm.status()
    if after.holding or after.stock != before.stock or not after.ready:
        typer.echo(f"FAIL: band not back in stock: stock {before.stock} -> {after.stock}, {_short(after)}")
        raise typer.Exit(EXIT_FAILED)
    typer.echo(f"PASS: homed, picked and returned a band; stock {after.stock}")


def _short(status: ArmStatus) -> str:
    return (
        f"state={status.state.value} homed={int(status.homed)} holding={int(status.holding)} "
        f"alarm={int(status.alarm) if status.alarm else 0} estop={int(status.estop)} door_open={int(status.door_open)}"
    )


def _pcsc_uid_reader(reader_name: str) -> Callable[[float], str]:
    """Read a band UID with Get Data (FF CA 00 00 00) through PC/SC, polling until `timeout`."""
    from smartcard.Exceptions import CardConnectionException, NoCardException  # noqa: PLC0415
    from smartcard.System import readers  # noqa: PLC0415

    def read_uid(timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            matching = [r for r in readers() if reader_name.lower() in str(r).lower()]
            if not matching:
                raise ArmConfigError(f"no PC/SC reader whose name contains {reader_name!r}")
            try:
                connection = matching[0].createConnection()
                connection.connect()
                data, sw1, sw2 = connection.transmit([0xFF, 0xCA, 0x00, 0x00, 0x00])
                connection.disconnect()
                if (sw1, sw2) == (0x90, 0x00):
                    return bytes(data).hex().upper()
            except (NoCardException, CardConnectionException):
                pass
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no band on reader {matching[0]} within {timeout} s")
            time.sleep(0.1)  # polling the reader: PC/SC has no cheaper portable wait here

    return read_uid


def _no_reader(_timeout: float) -> str:
    raise RuntimeError("no band reader given (--reader NAME)")


@app.command("dispense-one")
def dispense_one(
    ctx: typer.Context,
    *,
    reader: Annotated[str | None, typer.Option(help="PC/SC reader name (part) to read the band's UID.")] = None,
    hand_out: Annotated[
        bool, typer.Option("--hand-out", help="Present the band at the pickup slot (test band, not bound).")
    ] = False,
    pickup_timeout: Annotated[float, typer.Option(help="Seconds to wait for the band to be taken.")] = 30.0,
) -> None:
    """Run one dispense end to end; without --hand-out the band goes to the reject bin after the reader."""

    def technician_bind(uid: str) -> BindDecision:
        typer.echo(f"band UID {uid}")
        return BindDecision.accepted("bring-up") if hand_out else BindDecision.refused("bring-up test, not handed out")

    def progress(step: DispenseProgress) -> None:
        typer.echo(f"... {step.step.value}")

    read_uid = _pcsc_uid_reader(reader) if reader else _no_reader
    with _arm(ctx) as arm:
        dispenser = WristbandDispenser(arm, read_uid, pickup_timeout=pickup_timeout, on_progress=progress)
        result = dispenser.dispense(technician_bind)
    reason = result.reason.value if result.reason else "-"
    fault = f"E{int(result.fault)}" if result.fault else "-"
    typer.echo(
        f"outcome={result.outcome.value} uid={result.uid or '-'} reason={reason} "
        f"band={result.band_location.value} fault={fault} needs_staff={_yes(result.needs_staff)}"
    )
    if result.detail:
        typer.echo(f"detail: {result.detail}")
    if hand_out:
        ok = result.outcome is DispenseOutcome.HANDED_OUT
    else:
        # The dry run: the band must reach the reject bin, after a good UID read when a reader was given.
        ok = result.outcome is DispenseOutcome.REJECTED and (
            reader is None or result.reason is DispenseReason.BIND_REFUSED
        )
    if not ok or result.needs_staff:
        raise typer.Exit(EXIT_FAILED)


def _parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ArmConfigError(f"--listen must be HOST:PORT (PORT 0..65535), got {listen!r}")
    return host or "127.0.0.1", int(port)


def _load_bands(bands: str | None, bands_file: Path | None) -> tuple[str, ...]:
    uids: list[str] = []
    if bands:
        uids += [normalise_uid(u) for u in bands.split(",") if u.strip()]
    if bands_file is not None:
        try:
            text = bands_file.read_text(encoding="utf-8")
        except OSError as err:
            raise ArmConfigError(f"cannot read --bands-file {bands_file}: {err.strerror}") from err
        for number, line in enumerate(text.splitlines(), 1):
            entry = line.split("#", 1)[0].strip()
            if entry:
                try:
                    uids.append(normalise_uid(entry))
                except ArmConfigError as err:
                    raise ArmConfigError(f"{bands_file} line {number}: {err}") from err
    return tuple(uids) if uids else tuple(default_bands())


def _vpcd_hooks(address: str) -> tuple[Callable[[str], None], Callable[[], None]]:
    """Wire the simulated reader station to a virtual MIFARE band on the real pcscd (vpcd slot)."""
    host, port = _parse_listen(address)
    try:
        # Only the simulator's CLI reaches into the kiosk's PC/SC package; the library never does.
        pcsc = importlib.import_module("checkin.pcsc")
        band_card, card_slot = pcsc.MifareBand, pcsc.VirtualCardSlot
    except (ImportError, AttributeError) as err:
        raise ArmConfigError(f"--band-reader-vpcd needs checkin.pcsc with MifareBand/VirtualCardSlot: {err}") from err
    slot = card_slot(host, port)

    def at_reader(uid: str) -> None:
        slot.insert(band_card(uid))

    def left_reader() -> None:
        slot.remove()

    return at_reader, left_reader


@app.command()
def sim(
    *,
    listen: Annotated[str, typer.Option(help="HOST:PORT to serve (port 0 picks a free one).")] = "127.0.0.1:7001",
    fault: Annotated[
        list[str] | None, typer.Option(help=f"Fault to arm at start, repeatable: {', '.join(FAULTS)}.")
    ] = None,
    speed: Annotated[float, typer.Option(help="Motion speed factor (1 = real time).")] = 1.0,
    bands: Annotated[str | None, typer.Option(help="Band UIDs in stock, comma-separated, top first.")] = None,
    bands_file: Annotated[Path | None, typer.Option(help="File of band UIDs, one per line, # comments.")] = None,
    pickup_take_after: Annotated[
        float, typer.Option(help="Arm-seconds until the simulated expert takes a band.")
    ] = 3.0,
    no_auto_take: Annotated[
        bool, typer.Option("--no-auto-take", help="Nobody takes bands unless told (!!SIM TAKE).")
    ] = False,
    reboot_time: Annotated[float, typer.Option(help="Arm-seconds to boot after a power loss.")] = 2.0,
    seed: Annotated[int | None, typer.Option(help="Random seed (power loss keeps the band or not).")] = None,
    band_reader_vpcd: Annotated[
        str | None, typer.Option(help="HOST:PORT of a vpcd slot: the band at the reader station appears there.")
    ] = None,
) -> None:
    """Run the simulated arm on a TCP port; pyserial reaches it as socket://HOST:PORT."""
    with _device_errors():
        host, port = _parse_listen(listen)
        settings = SimSettings(
            bands=_load_bands(bands, bands_file),
            speed=speed,
            pickup_take_after=None if no_auto_take else pickup_take_after,
            reboot_time=reboot_time,
            seed=seed,
        )
        at_reader, left_reader = _vpcd_hooks(band_reader_vpcd) if band_reader_vpcd else (None, None)
        simulator = ArmSimulator(
            settings, host=host, port=port, on_band_at_reader=at_reader, on_band_left_reader=left_reader
        )
        for name in fault or []:
            simulator.inject(name)
        try:
            simulator.start()
        except OSError as err:
            raise ArmConnectionError(f"cannot listen on {listen}: {err.strerror}") from err
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    typer.echo(f"arm simulator listening on {simulator.url} ({len(settings.bands)} bands, speed {speed})", err=False)
    sys.stdout.flush()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()


def main() -> None:
    """Console-script entry point."""
    app()
