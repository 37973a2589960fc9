"""CLI helpers every device tool shares: one exit-code scheme, one error line, logging, signals, HOST:PORT, sim-ctl.

Exit codes (docs/device-kit.md), the same for every device tool:

====  ===========================================================================
0     done
2     bad input: an option, a file, an address (nothing was sent to the device)
3     device unreachable: cannot open the port, no answer (offline, unplugged)
4     device needs a person: it answered but cannot do the job (paper out, cover open)
5     device answered nonsense (protocol error): a wrong device or a firmware fault
====  ===========================================================================
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeAlias

import typer

from device_kit.control import ControlClient, ControlError

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK = 0
EXIT_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_NEEDS_PERSON = 4
EXIT_PROTOCOL = 5


def fail(code: int, reason: str) -> NoReturn:
    """Print ``错误 / error: <reason>`` on stderr (one line, no traceback) and exit with ``code``."""
    typer.echo(f"错误 / error: {reason}", err=True)
    raise typer.Exit(code)


#: A device tool's error table: the error type, its exit code and the words before the error's own message.
ErrorTable: TypeAlias = "Sequence[tuple[type[BaseException], int, str]]"


def fail_for(err: BaseException, table: ErrorTable, *, default: int = EXIT_UNREACHABLE) -> NoReturn:
    """Fail with the first row of ``table`` whose type ``err`` is (most specific rows first)."""
    for error_type, code, text in table:
        if isinstance(err, error_type):
            fail(code, f"{text}: {err}")
    fail(default, str(err))


def setup_logging(verbose: int) -> None:
    """Quiet by default so a failure is its one-line reason; -v logs steps, -vv every frame on the wire."""
    level = {0: logging.ERROR, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def parse_host_port(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` as a pair; exits with EXIT_INPUT naming the option when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        fail(EXIT_INPUT, f"{option} 须为 HOST:PORT / {option} must be HOST:PORT, got {text!r}")
    return host, int(port)


def parse_control_port(control: str | None, host: str) -> int | None:
    """A simulator's ``--control HOST:PORT``: its port (None without one); the host must be the ``--listen`` host."""
    if control is None:
        return None
    control_host, port = parse_host_port(control, "--control")
    if control_host != host:
        fail(EXIT_INPUT, "--control 须与 --listen 同一主机 / --control must use the --listen host")
    return port


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM (a simulator run from the CLI, stopped by Ctrl-C or its supervisor)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # In slices: the handler runs only in the main thread once it wakes, and the kernel may hand the
    # signal to one of the simulator's threads instead; an endless wait would never return.
    while not stop.wait(0.25):
        pass


def add_sim_ctl(app: typer.Typer) -> None:
    """Add the shared ``sim-ctl`` command to a device tool: faults | status | clear [NAME] | NAME [key=value ...]."""

    @app.command("sim-ctl")
    def sim_ctl(
        control: Annotated[str, typer.Option(help="模拟器控制通道 / simulator control HOST:PORT")],
        command: Annotated[
            list[str],
            typer.Argument(help="faults | status | clear [NAME] | NAME [key=value ...], e.g. paper_out after_lines=3"),
        ],
    ) -> None:
        """控制模拟器故障 / Switch a fault on a running simulator, or list its faults."""
        host, port = parse_host_port(control, "--control")
        client = ControlClient(host, port)
        verb, *rest = command
        try:
            if verb == "faults":
                for name, spec in client.faults().items():
                    params = " ".join(f"{k}={v}" for k, v in spec["params"].items())
                    typer.echo(f"{name}: {spec['help']}" + (f"  [{params}]" if params else ""))
                return
            if verb == "status":
                reply = client.status()
            elif verb == "clear":
                reply = client.clear(rest[0] if rest else None)
            else:
                values: dict[str, str] = {}
                for item in rest:
                    key, sep, value = item.partition("=")
                    if not sep or not key:
                        fail(EXIT_INPUT, f"参数须为 key=value / parameters are key=value, got {item!r}")
                    values[key] = value
                reply = client.inject(verb, **values)
        except ControlError as err:
            unreachable = "does not answer" in str(err)
            fail(EXIT_UNREACHABLE if unreachable else EXIT_INPUT, str(err))
        reply.pop("ok", None)
        typer.echo(json.dumps(reply, ensure_ascii=False, sort_keys=True))
