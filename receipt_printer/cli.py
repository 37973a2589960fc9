"""Technician command line for the receipt printer: status, test page, print a raw ESC/POS file, run the simulator.

Exit codes and the one-line error are the device kit's (docs/device-kit.md): 2 bad input, 3 printer
unreachable, 4 printer needs a person (paper, cover), 5 printer answered nonsense.
"""

from __future__ import annotations

from pathlib import Path  # noqa: TC003 - Typer reads the annotation at runtime
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

import receipt_printer.simulator as printer_sim  # lazy (lazy_imports): technicians' commands never run it
from device_kit.cli import (
    EXIT_INPUT,
    EXIT_NEEDS_PERSON,
    EXIT_PROTOCOL,
    EXIT_UNREACHABLE,
    ErrorTable,
    add_sim_ctl,
    fail,
    fail_for,
    parse_host_port,
    setup_logging,
    wait_for_signal,
)
from receipt_printer.driver import ReceiptPrinter
from receipt_printer.errors import (
    CoverOpenError,
    PaperOutError,
    PrinterError,
    PrinterNotReadyError,
    PrinterOfflineError,
    ProtocolError,
)

if TYPE_CHECKING:
    from receipt_printer.models import PrinterStatus, PrintReport

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="小票打印机工具 / receipt printer tool: status, test page, raw ESC/POS, simulator.",
)
add_sim_ctl(app)

_MESSAGES: ErrorTable = [
    (CoverOpenError, EXIT_NEEDS_PERSON, "纸仓盖打开 / cover open"),
    (PaperOutError, EXIT_NEEDS_PERSON, "缺纸 / paper out"),
    (PrinterNotReadyError, EXIT_NEEDS_PERSON, "打印机未就绪 / printer not ready"),
    (PrinterOfflineError, EXIT_UNREACHABLE, "打印机无应答 / printer does not answer"),
    (ProtocolError, EXIT_PROTOCOL, "打印机应答异常 / printer answered nonsense"),
    (PrinterError, EXIT_UNREACHABLE, "打印机错误 / printer error"),
]


def _fail_printer(err: PrinterError) -> NoReturn:
    fail_for(err, _MESSAGES, default=EXIT_UNREACHABLE)


class _Settings:
    port: str | None = None
    timeout: float = 1.0


_settings = _Settings()


@app.callback()
def _options(
    port: Annotated[
        str | None,
        typer.Option(
            "--port",
            "-p",
            envvar="PRINTER_PORT",
            help="打印机地址 / /dev/ttyUSB0, socket://HOST:9100 (network printer)",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.05, help="状态应答超时秒数 / seconds to wait for a status answer")
    ] = 1.0,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="-v 日志, -vv 报文 / log, wire")] = 0,
) -> None:
    _settings.port, _settings.timeout = port, timeout
    setup_logging(verbose)


def _open() -> ReceiptPrinter:
    if not _settings.port:
        fail(EXIT_INPUT, "未指定打印机 / no printer given: use --port URL or set PRINTER_PORT")
    try:
        return ReceiptPrinter.open(_settings.port, timeout=_settings.timeout)
    except PrinterError as err:
        _fail_printer(err)


def _describe(status: PrinterStatus) -> str:
    words = {
        "cover_open": "纸仓盖打开 / cover open",
        "paper_out": "缺纸 / paper out",
        "paper_near_end": "纸将尽 / paper near end",
        "error": "故障 / error",
        "offline": "脱机 / offline",
    }
    return "; ".join(words[p] for p in status.problems()) or "就绪 / ready"


def _report(report: PrintReport) -> None:
    typer.echo(f"已打印 / printed: {report.bytes_sent} bytes in {report.elapsed_s:.2f} s; {_describe(report.after)}")


@app.command()
def status() -> None:
    """打印机状态 / Show online, cover and paper state (DLE EOT 1-4); exit 4 if it cannot print."""
    printer = _open()
    try:
        st = printer.status()
    except PrinterError as err:
        _fail_printer(err)
    finally:
        printer.close()
    typer.echo(f"状态 / status: {_describe(st)}")
    if not st.ready:
        raise typer.Exit(EXIT_NEEDS_PERSON)


@app.command("test-page")
def test_page() -> None:
    """打印测试页 / Print a short test page (Chinese, ASCII, time, cut)."""
    printer = _open()
    try:
        _report(printer.test_page())
    except PrinterError as err:
        _fail_printer(err)
    finally:
        printer.close()


@app.command("print-raw")
def print_raw(file: Annotated[Path, typer.Argument(help="ESC/POS 原始数据文件 / file of raw ESC/POS bytes")]) -> None:
    """打印原始数据 / Send a file of raw ESC/POS bytes, with a status check before and after."""
    try:
        data = file.read_bytes()
    except OSError as err:
        fail(EXIT_INPUT, f"无法读取文件 / cannot read {file}: {err.strerror}")
    if not data:
        fail(EXIT_INPUT, f"文件为空 / {file} is empty")
    printer = _open()
    try:
        _report(printer.print_raw(data))
    except PrinterError as err:
        _fail_printer(err)
    finally:
        printer.close()


@app.command()
def sim(
    *,
    listen: Annotated[str, typer.Option(help="监听地址 / HOST:PORT the driver connects to (socket://HOST:PORT)")],
    control: Annotated[str | None, typer.Option(help="控制通道 / HOST:PORT of the fault control channel")] = None,
    out: Annotated[Path | None, typer.Option(help="小票图片目录 / directory for each slip's PNG")] = None,
) -> None:
    """运行打印机模拟器 / Run the printer simulator until Ctrl-C."""
    host, port = parse_host_port(listen, "--listen")
    control_port = None
    if control is not None:
        control_host, control_port = parse_host_port(control, "--control")
        if control_host != host:
            fail(EXIT_INPUT, "--control 须与 --listen 同一主机 / --control must use the --listen host")
    if out is not None and not out.is_dir():
        fail(EXIT_INPUT, f"--out 目录不存在 / --out directory does not exist: {out}")
    simulator = printer_sim.PrinterSimulator(host, port, control_port=control_port, output_dir=out)
    try:
        simulator.start()
    except OSError as err:
        fail(EXIT_INPUT, f"无法监听 / cannot listen on {listen}: {err}")
    typer.echo(f"打印机模拟器 / printer simulator: {simulator.url}", err=False)
    if simulator.control_address:
        typer.echo(f"控制通道 / control: {simulator.control_address[0]}:{simulator.control_address[1]}")
    wait_for_signal()
    simulator.stop()


def main() -> None:
    """Console-script entry point."""
    app()
