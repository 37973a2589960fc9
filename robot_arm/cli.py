"""`robot-arm`: bring-up and diagnostics of the wristband arm, and its simulator.

    robot-arm --port URL status [--json] | home | clear | self-test | dispense-one
    robot-arm sim --listen HOST:PORT [--fault NAME ...] [--speed X] [--bands UID,...]

Errors print one ``错误 / error:`` line and exit with the device kit's codes (docs/device-kit.md):
2 bad input, 3 unreachable, 4 the arm needs a person (refused, faulted, a check failed), 5 protocol.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path  # noqa: TC003  # Typer reads the annotation at run time
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from band_reader.driver import BandUidReader
from band_reader.errors import BandReaderError
from band_reader.simulator import MifareBand
from device_kit.cli import (
    EXIT_INPUT,
    EXIT_NEEDS_PERSON,
    EXIT_PROTOCOL,
    EXIT_UNREACHABLE,
    ErrorTable,
    add_sim_ctl,
    fail,
    fail_for,
    parse_control_port,
    parse_host_port,
    setup_logging,
    wait_for_signal,
)
from pcsc.vpcd import VirtualCardSlot
from robot_arm.dispenser import WristbandDispenser
from robot_arm.driver import ArmDriver
from robot_arm.errors import ArmConfigError, ArmConnectionError, ArmError, ArmProtocolError, ArmTimeoutError
from robot_arm.models import BindDecision, DispenseOutcome, DispenseProgress, DispenseReason, normalise_uid
from robot_arm.protocol import ArmStatus, Station
from robot_arm.simulator import FAULTS, ArmSimulator, SimSettings, default_bands

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: A check that ran and failed (self-test, dry-run dispense): the arm needs a person.
EXIT_FAILED: Final = EXIT_NEEDS_PERSON
EXIT_CONFIG: Final = EXIT_INPUT
EXIT_LINK: Final = EXIT_UNREACHABLE
EXIT_DEVICE: Final = EXIT_NEEDS_PERSON

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


#: The arm's errors, most specific first, with the kit's exit codes.
_MESSAGES: ErrorTable = [
    (ArmConfigError, EXIT_INPUT, "config error"),
    (ArmConnectionError, EXIT_UNREACHABLE, "link error"),
    (ArmTimeoutError, EXIT_UNREACHABLE, "link error"),
    (ArmProtocolError, EXIT_PROTOCOL, "protocol error"),
    (ArmError, EXIT_NEEDS_PERSON, "arm error"),
]


@contextlib.contextmanager
def _device_errors() -> Iterator[None]:
    """Map the arm's errors to one line and an exit code: the single place the CLI does so."""
    try:
        yield
    except ArmError as err:
        fail_for(err, _MESSAGES)


@app.callback()
def main_options(
    ctx: typer.Context,
    port: Annotated[
        str | None,
        typer.Option("--port", "-p", envvar="ROBOT_ARM_PORT", help="Serial port or URL (socket://127.0.0.1:7001)."),
    ] = None,
    command_timeout: Annotated[float, typer.Option(help="Seconds to wait for a reply.")] = 1.0,
    motion_timeout: Annotated[float, typer.Option(help="Seconds one motion may take.")] = 20.0,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="-v steps, -vv the wire.")] = 0,
) -> None:
    """手环发放机械臂 / Wristband dispenser arm."""
    setup_logging(verbose)
    ctx.obj = _Options(port, command_timeout, motion_timeout)


@contextlib.contextmanager
def _arm(ctx: typer.Context) -> Iterator[ArmDriver]:
    options: _Options = ctx.obj
    if not options.port:
        fail(EXIT_INPUT, "no arm port: give --port URL or set ROBOT_ARM_PORT")
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
    """机械臂状态 / Report position, gripper, band held, stock, pickup sensor, door, e-stop and alarms."""
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
    """回原点 / Home the axes (after power-up, e-stop, door or jam)."""
    with _arm(ctx) as arm, _device_errors():
        arm.home()
        typer.echo("homed")


@app.command()
def clear(ctx: typer.Context) -> None:
    """清除报警 / Clear a latched alarm (the e-stop must be released and the door closed)."""
    with _arm(ctx) as arm, _device_errors():
        arm.clear()
        typer.echo("alarm cleared")


@app.command("self-test")
def self_test(
    ctx: typer.Context,
    reader: Annotated[
        str | None, typer.Option(help="PC/SC band reader name (part): read the band's UID at the reader stop.")
    ] = None,
    read_timeout: Annotated[float, typer.Option(help="Seconds to wait for the band's UID.")] = 5.0,
) -> None:
    """自检 / Home, pick a band, show it to the reader and return it to stock; exit 0 only if all of it worked."""
    band_reader = BandUidReader(reader) if reader else None

    def read_band(_arm: ArmDriver) -> None:
        if band_reader is not None:
            typer.echo(f"      band UID {band_reader.read_uid(read_timeout)}")

    steps: list[tuple[str, Callable[[ArmDriver], object]]] = [
        ("回零 / home", lambda a: a.home()),
        ("取手环 / pick", lambda a: a.pick()),
        ("到读卡位 / move to reader", lambda a: a.move(Station.READER)),
        ("读手环 / read the band" if reader else "读手环 / read the band (no --reader: skipped)", read_band),
        ("回库存 / move to stock", lambda a: a.move(Station.STOCK)),
        ("放回 / release into stock", lambda a: a.release()),
        ("停靠 / park", lambda a: a.move(Station.HOME)),
    ]
    with _arm(ctx) as arm:
        try:
            before = arm.status()
        except ArmError as err:
            fail(EXIT_UNREACHABLE, f"cannot read status: {err}")
        if before.holding or before.estop or before.door_open or before.alarm is not None:
            typer.echo(f"FAIL: arm not in a state to test: {_short(before)}")
            raise typer.Exit(EXIT_FAILED)
        for name, step in steps:
            try:
                step(arm)
            except (ArmError, BandReaderError) as err:
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
    """发放一个手环 / Run one dispense end to end; without --hand-out the band goes to the reject bin after reading."""

    def technician_bind(uid: str) -> BindDecision:
        typer.echo(f"band UID {uid}")
        return BindDecision.accepted("bring-up") if hand_out else BindDecision.refused("bring-up test, not handed out")

    def progress(step: DispenseProgress) -> None:
        typer.echo(f"... {step.step.value}")

    read_uid = BandUidReader(reader).read_uid if reader else _no_reader
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
    host, port = parse_host_port(address, "--band-reader-vpcd")
    slot = VirtualCardSlot(host, port)

    def at_reader(uid: str) -> None:
        slot.insert(MifareBand(uid))

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
        bool, typer.Option("--no-auto-take", help="Nobody takes bands unless told (control op 'take').")
    ] = False,
    reboot_time: Annotated[float, typer.Option(help="Arm-seconds to boot after a power loss.")] = 2.0,
    seed: Annotated[int | None, typer.Option(help="Random seed (power loss keeps the band or not).")] = None,
    control: Annotated[
        str | None, typer.Option(help="模拟器控制通道 / HOST:PORT of the control channel (sim-ctl).")
    ] = None,
    band_reader_vpcd: Annotated[
        str | None, typer.Option(help="HOST:PORT of a vpcd slot: the band at the reader station appears there.")
    ] = None,
) -> None:
    """运行机械臂模拟器 / Run the simulated arm on a TCP port; pyserial reaches it as socket://HOST:PORT."""
    with _device_errors():
        host, port = parse_host_port(listen, "--listen")
        control_port = parse_control_port(control, host)
        settings = SimSettings(
            bands=_load_bands(bands, bands_file),
            speed=speed,
            pickup_take_after=None if no_auto_take else pickup_take_after,
            reboot_time=reboot_time,
            seed=seed,
        )
        at_reader, left_reader = _vpcd_hooks(band_reader_vpcd) if band_reader_vpcd else (None, None)
        simulator = ArmSimulator(
            settings,
            host=host,
            port=port,
            on_band_at_reader=at_reader,
            on_band_left_reader=left_reader,
            control_port=control_port,
        )
        for name in fault or []:
            simulator.inject(name)
        try:
            simulator.start()
        except OSError as err:
            raise ArmConnectionError(f"cannot listen on {listen}: {err.strerror}") from err
    typer.echo(f"arm simulator listening on {simulator.url} ({len(settings.bands)} bands, speed {speed})", err=False)
    if simulator.control_address is not None:
        typer.echo("控制通道 / control: {}:{}".format(*simulator.control_address))
    sys.stdout.flush()
    try:
        wait_for_signal()
    finally:
        simulator.stop()


add_sim_ctl(app)


def main() -> None:
    """Console-script entry point."""
    app()
