"""Technician command line for the UWB gateway: send a room to a band, read status, run the simulator.

Every device or input error ends with one line ``错误 / error: <中文> / <English>: <detail>`` and a
non-zero exit code (see docs/technician-uwb.md), never a traceback.
"""

from __future__ import annotations

from pathlib import Path  # noqa: TC003 - Typer reads the annotation at runtime
from typing import Annotated, NoReturn

import typer

from device_kit.cli import (
    EXIT_INPUT,
    ErrorTable,
    add_sim_ctl,
    fail,
    fail_for,
    parse_control_port,
    parse_host_port,
    setup_logging,
    wait_for_signal,
)
from uwb import payload
from uwb.driver import UwbGateway
from uwb.errors import (
    DeliveryLostError,
    DeliverySupersededError,
    DeliveryTimeoutError,
    GatewayBusyError,
    GatewayError,
    GatewayOfflineError,
    PayloadError,
    TagError,
    TagNackError,
    TagNoAckError,
    TagOutOfRangeError,
    UwbError,
)
from uwb.models import BandCleared, BandContent, RoomAssignment, format_tag_id, parse_tag_id
from uwb.simulator import GatewaySimulator

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="UWB 网关工具 / UWB gateway tool: write rooms to wristbands, check the gateway, run the simulator.",
)

#: Exit codes, one per kind of failure a technician handles differently.
EXIT_GATEWAY = 3
EXIT_TAG_UNREACHABLE = 4
EXIT_TAG_REFUSED = 5

_MESSAGES: ErrorTable = [
    (PayloadError, EXIT_INPUT, "内容无法写入手环 / content does not fit the band"),
    (GatewayOfflineError, EXIT_GATEWAY, "网关无应答 / gateway does not answer"),
    (GatewayBusyError, EXIT_GATEWAY, "网关忙 / gateway busy"),
    (GatewayError, EXIT_GATEWAY, "网关拒绝 / gateway refused"),
    (TagOutOfRangeError, EXIT_TAG_UNREACHABLE, "手环不在范围内 / band out of range"),
    (TagNoAckError, EXIT_TAG_UNREACHABLE, "手环未确认 / band did not acknowledge"),
    (DeliveryTimeoutError, EXIT_TAG_UNREACHABLE, "手环应答超时 / band too slow to answer"),
    (DeliverySupersededError, EXIT_TAG_UNREACHABLE, "已被新的写入取代 / replaced by a newer write"),
    (DeliveryLostError, EXIT_TAG_UNREACHABLE, "网关已丢失该写入 / gateway lost the write"),
    (TagNackError, EXIT_TAG_REFUSED, "手环拒收 / band refused the data"),
    (TagError, EXIT_TAG_UNREACHABLE, "手环未写入 / band not written"),
    (UwbError, EXIT_GATEWAY, "UWB 错误 / UWB error"),
]


def _fail_uwb(err: UwbError) -> NoReturn:
    fail_for(err, _MESSAGES, default=EXIT_GATEWAY)


class _Settings:
    """Options given before the command."""

    port: str | None = None
    timeout: float = 0.5
    retries: int = 3


_settings = _Settings()


@app.callback()
def _options(
    port: Annotated[
        str | None,
        typer.Option("--port", "-p", envvar="UWB_PORT", help="网关串口 / gateway port URL: /dev/ttyUSB0, socket://H:P"),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.01, help="单帧超时秒数 / seconds per request frame")] = 0.5,
    retries: Annotated[int, typer.Option(min=1, max=10, help="单帧重发次数 / tries per request frame")] = 3,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="-v 日志, -vv 报文 / log, wire")] = 0,
) -> None:
    _settings.port, _settings.timeout, _settings.retries = port, timeout, retries
    setup_logging(verbose)


def _open() -> UwbGateway:
    if not _settings.port:
        fail(EXIT_INPUT, "未指定网关 / no gateway given: use --port URL or set UWB_PORT")
    try:
        return UwbGateway.open(_settings.port, timeout=_settings.timeout, retries=_settings.retries)
    except UwbError as err:
        _fail_uwb(err)


def _tag(text: str) -> int:
    try:
        return parse_tag_id(text)
    except ValueError as err:
        fail(EXIT_INPUT, f"手环编号无效 / invalid tag id: {err}")


def _deliver(content: BandContent, ack_timeout: float) -> None:
    try:
        data = payload.encode(content)
    except PayloadError as err:
        _fail_uwb(err)
    gateway = _open()
    try:
        receipt = gateway.send_to_tag(content.tag_id, data, ack_timeout=ack_timeout)
    except UwbError as err:
        _fail_uwb(err)
    finally:
        gateway.close()
    typer.echo(
        f"已写入 / written: tag {format_tag_id(content.tag_id)} {_describe(content)} "
        f"(downlink {receipt.msg_id}, {receipt.elapsed_s:.2f} s)"
    )


def _describe(content: BandContent) -> str:
    if isinstance(content, BandCleared):
        return "已清空 / cleared"
    return f"batch={content.batch_code} hotel={content.hotel_code} room={content.room_number}"


AckTimeout = Annotated[float, typer.Option(min=0.1, help="等待手环确认的秒数 / seconds to wait for the band's ack")]


@app.command()
def send(
    tag: Annotated[str, typer.Argument(help="手环 UWB 编号 / tag id, 4 hex digits, e.g. 204C")],
    batch: Annotated[str, typer.Option(help="批次编号 / batch code (≤16)")],
    hotel: Annotated[str, typer.Option(help="酒店编号 / hotel code (≤8)")],
    room: Annotated[str, typer.Option(help="房间号 / room number (≤10)")],
    ack_timeout: AckTimeout = 10.0,
) -> None:
    """写入房间到手环 / Write a room assignment to a band and wait for its acknowledgement."""
    _deliver(RoomAssignment(_tag(tag), batch, hotel, room), ack_timeout)


@app.command()
def clear(
    tag: Annotated[str, typer.Argument(help="手环 UWB 编号 / tag id, e.g. 204C")],
    ack_timeout: AckTimeout = 10.0,
) -> None:
    """清空手环 / Clear a band (annulled check-in, withdrawn band)."""
    _deliver(BandCleared(_tag(tag)), ack_timeout)


@app.command()
def status() -> None:
    """网关状态 / Show the gateway's node id, radio state and downlink counters."""
    gateway = _open()
    try:
        st = gateway.status()
    except UwbError as err:
        _fail_uwb(err)
    finally:
        gateway.close()
    radio = "已联网 / joined" if st.radio_up else "未联网 / not joined"
    typer.echo(f"node_id: {st.node_id:016X}")
    typer.echo(f"radio: {radio}")
    typer.echo(f"queued: {st.queued}  tags_heard: {st.tags_heard}  acked_total: {st.acked_total}")


@app.command()
def read(tag: Annotated[str, typer.Argument(help="手环 UWB 编号 / tag id, e.g. 204C")]) -> None:
    """读取手环内容 / Show what a band last acknowledged holding, decoded."""
    tag_id = _tag(tag)
    gateway = _open()
    try:
        data = gateway.read_tag(tag_id)
    except UwbError as err:
        _fail_uwb(err)
    finally:
        gateway.close()
    if not data:
        typer.echo(f"tag {format_tag_id(tag_id)}: 无数据 / nothing reported")
        return
    try:
        typer.echo(f"tag {format_tag_id(tag_id)}: {_describe(payload.decode(data))}")
    except PayloadError as err:
        fail(EXIT_TAG_REFUSED, f"手环内容无法解析 / band content unreadable: {err} ({data.hex()})")


@app.command()
def sim(
    *,
    listen: Annotated[str, typer.Option(help="监听地址 / HOST:PORT the driver connects to (socket://HOST:PORT)")],
    dump: Annotated[Path | None, typer.Option(help="手环内容 JSON 文件 / JSON file of what each tag holds")] = None,
    tags: Annotated[str, typer.Option(help="手环编号 / comma-separated tag ids, e.g. 204C,0F07")] = "",
    control: Annotated[str | None, typer.Option(help="控制通道 / HOST:PORT of the fault control channel")] = None,
    window: Annotated[float, typer.Option(min=0.05, help="投递窗口秒数 / gateway delivery window, s")] = 3.0,
    latency: Annotated[float, typer.Option(min=0.0, help="手环唤醒延迟秒数 / tag wake-up latency, s")] = 0.05,
) -> None:
    """运行网关模拟器 / Run the gateway simulator with tags until Ctrl-C."""
    host, port = parse_host_port(listen, "--listen")
    control_port = parse_control_port(control, host)
    tag_ids = tuple(_tag(t.strip()) for t in tags.split(",") if t.strip())
    if dump is not None and not dump.parent.is_dir():
        fail(EXIT_INPUT, f"--dump 目录不存在 / --dump directory does not exist: {dump.parent}")
    simulator = GatewaySimulator(
        host, port, tags=tag_ids, delivery_window_s=window, dump_path=dump, control_port=control_port
    )
    simulator.set_all_tags(latency_s=latency)
    try:
        simulator.start()
    except OSError as err:
        fail(EXIT_INPUT, f"无法监听 / cannot listen on {listen}: {err}")
    typer.echo(f"UWB 网关模拟器 / gateway simulator: {simulator.url} tags={','.join(map(format_tag_id, tag_ids))}")
    if simulator.control_address:
        typer.echo(f"控制通道 / control: {simulator.control_address[0]}:{simulator.control_address[1]}")
    try:
        wait_for_signal()
    finally:
        simulator.stop()


add_sim_ctl(app)


def main() -> None:
    """Console-script entry point."""
    app()
