"""A private pcscd with the vpcd driver, for tests and the demo: own socket, own ports, no systemd.

pcscd 1.9.9 has its socket path compiled in (/run/pcscd/pcscd.comm) but accepts a listening socket
from systemd socket activation (LISTEN_FDS/LISTEN_PID, fd 3). We use that: bind a Unix socket at a
private path, hand it to pcscd as fd 3, and point clients at it with PCSCLITE_CSOCK_NAME, which
libpcsclite (and so pyscard) honours. `-c FILE` gives it a reader.conf with our own vpcd ports.
Two daemons (two test workers, a test run and the demo) therefore never meet.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Self

from device_kit import ports
from pcsc.errors import PcscDaemonError
from pcsc.vpcd import VirtualCardSlot

if TYPE_CHECKING:
    from types import TracebackType

log = logging.getLogger("pcsc.daemon")

VPCD_DRIVER: Final = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD: Final = shutil.which("pcscd") or "/usr/sbin/pcscd"
#: vpcd opens this many slots per reader.conf entry, on consecutive ports (built with --enable-vpcdslots=2).
SLOTS_PER_ENTRY: Final = 2
SOCKET_ENV: Final = "PCSCLITE_CSOCK_NAME"
_LISTEN: Final = "0A"


@dataclass(frozen=True, slots=True)
class VpcdSlotInfo:
    """A vpcd slot: the reader name clients see, and the TCP port a virtual card connects to."""

    reader_name: str
    host: str
    port: int

    def slot(self) -> VirtualCardSlot:
        """A VirtualCardSlot for this slot."""
        return VirtualCardSlot(self.host, self.port)


def pick_port_pairs(count: int) -> list[int]:
    """`count` base ports P with P and P+1 both free (vpcd's two slots), below the ephemeral range.

    vpcd binds them when pcscd starts, later: a port-0 bind of another process is never handed them
    meanwhile (device_kit/ports.py).
    """
    bases: list[int] = []
    for _ in range(200):
        try:
            base = ports.free_port("0.0.0.0", width=2)  # noqa: S104 - vpcd binds INADDR_ANY; probe the same
        except OSError:
            break
        if base not in bases and base + 1 not in bases and base - 1 not in bases:  # free_port probed both
            bases.append(base)
            if len(bases) == count:
                return bases
    raise PcscDaemonError(f"could not find {count} pair(s) of free TCP ports for vpcd")


def listening_ports() -> set[int]:
    """TCP ports in LISTEN state on this machine (from /proc/net/tcp and tcp6)."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and fields[3] == _LISTEN:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class PcscDaemon:
    """A private pcscd process with `readers` vpcd entries (2 slots each), started and stopped by us."""

    def __init__(
        self,
        *,
        readers: int = 1,
        friendly_name: str = "Kiosk Virtual PCD",
        workdir: Path | None = None,
        base_ports: list[int] | None = None,
        host: str = "127.0.0.1",
        debug: bool = False,
        start_timeout: float = 10.0,
    ) -> None:
        if readers < 1:
            raise ValueError(f"PcscDaemon needs at least 1 reader entry, got {readers}")
        if base_ports is not None and len(base_ports) != readers:
            raise ValueError(f"base_ports must list {readers} port(s), got {len(base_ports)}")
        self.readers = readers
        self.friendly_name = friendly_name
        self.host = host
        self.debug = debug
        self.start_timeout = start_timeout
        self._base_ports = base_ports
        self._given_workdir = workdir
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self.slots: list[VpcdSlotInfo] = []

    # --- what clients need --------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        """The daemon's client socket (the value for PCSCLITE_CSOCK_NAME)."""
        if self._workdir is None:
            raise PcscDaemonError("the daemon is not started")
        return self._workdir / "pcscd.comm"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a client process (pyscard, pcsc_scan, the kiosk) to reach this daemon."""
        return {SOCKET_ENV: str(self.socket_path)}

    @property
    def reader_names(self) -> list[str]:
        """The reader names clients see, one per slot."""
        return [s.reader_name for s in self.slots]

    def export_env(self) -> None:
        """Point this process's PC/SC clients at the daemon.

        libpcsclite reads PCSCLITE_CSOCK_NAME once per process, at its first call: do this before
        any pyscard use in the process.
        """
        os.environ.update(self.env)

    def slot(self, index: int) -> VirtualCardSlot:
        """A VirtualCardSlot for slot `index`."""
        return self.slots[index].slot()

    def log_text(self) -> str:
        """What pcscd has printed so far (for failing tests)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")

    # --- life cycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        """Start pcscd and wait (bounded) until every vpcd port is listening."""
        if not Path(PCSCD).exists():
            raise PcscDaemonError("pcscd is not installed (Debian package pcscd)")
        if not VPCD_DRIVER.exists():
            raise PcscDaemonError(f"the vpcd driver {VPCD_DRIVER} is missing (Debian package vsmartcard-vpcd)")
        self._workdir = self._given_workdir or Path(tempfile.mkdtemp(prefix="kiosk-pcscd-"))
        self._workdir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._base_ports else 3
        last: PcscDaemonError | None = None
        for attempt in range(1, attempts + 1):
            bases = self._base_ports or pick_port_pairs(self.readers)
            try:
                self._launch(bases)
            except PcscDaemonError as err:
                # Another process may have taken a port between our probe and pcscd's bind.
                last = err
                log.warning("pcscd start attempt %d of %d failed: %s", attempt, attempts, err)
                self._terminate()
            else:
                return self
        assert last is not None
        self._cleanup_dir()
        raise last

    def _launch(self, bases: list[int]) -> None:
        assert self._workdir is not None
        conf = self._workdir / "reader.conf"
        # pcscd names a slot "<FRIENDLYNAME> <reader> <slot>"; with one FRIENDLYNAME per entry the
        # reader number is 00 for each, so entries get distinct names (A, B, ...).
        names = [
            self.friendly_name if self.readers == 1 else f"{self.friendly_name} {chr(65 + i)}"
            for i in range(self.readers)
        ]
        conf.write_text(
            "".join(
                f'FRIENDLYNAME "{name}"\nDEVICENAME /dev/null:{base}\nLIBPATH {VPCD_DRIVER}\nCHANNELID {base}\n\n'
                for name, base in zip(names, bases, strict=True)
            )
        )
        self.slots = [
            VpcdSlotInfo(f"{name} 00 {slot:02X}", self.host, base + slot)
            for name, base in zip(names, bases, strict=True)
            for slot in range(SLOTS_PER_ENTRY)
        ]
        path = self.socket_path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(64)
        fd = listener.fileno()
        self._log_path = self._workdir / "pcscd.log"
        args = [PCSCD, "--foreground", "--config", str(conf)]
        if self.debug:
            args += ["--debug", "--apdu"]
        env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")}
        # A tiny Python trampoline moves our socket to fd 3 (SD_LISTEN_FDS_START), sets LISTEN_PID
        # to its own pid and execs pcscd, which keeps that pid. (Not sh: dash cannot redirect fds
        # above 9; not preexec_fn: subprocess closes fds outside pass_fds after it runs.)
        trampoline = (
            "import os, sys; fd = int(sys.argv[1]); fd != 3 and (os.dup2(fd, 3), os.close(fd)); "
            "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); os.execv(sys.argv[2], sys.argv[2:])"
        )
        with self._log_path.open("wb") as out:
            self._process = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell input
                [sys.executable, "-I", "-S", "-c", trampoline, str(fd), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
                env=env,
                start_new_session=True,
            )
        self._check_socket_handed_over(listener)
        listener.close()
        wanted = {s.port for s in self.slots}
        deadline = time.monotonic() + self.start_timeout
        delay = 0.005
        while not wanted <= listening_ports():
            if self._process.poll() is not None:
                raise PcscDaemonError(f"pcscd exited with code {self._process.returncode}: {self.log_text()[-500:]}")
            if time.monotonic() > deadline:
                raise PcscDaemonError(
                    f"vpcd ports {sorted(wanted - listening_ports())} not listening after {self.start_timeout:.0f} s: "
                    f"{self.log_text()[-500:]}"
                )
            time.sleep(delay)  # polling /proc with a deadline: pcscd gives no readiness signal
            delay = min(delay * 2, 0.05)
        log.info("private pcscd pid %d on %s, readers %s", self._process.pid, path, self.reader_names)

    def _check_socket_handed_over(self, listener: socket.socket) -> None:
        """Fail unless pcscd holds our socket as fd 3: otherwise it would serve /run/pcscd for everyone."""
        assert self._process is not None
        wanted = os.fstat(listener.fileno()).st_ino
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                proc = Path(f"/proc/{self._process.pid}")
                if (proc / "exe").readlink().name == "pcscd":
                    if (proc / "fd" / "3").stat().st_ino == wanted:
                        return
                    raise PcscDaemonError("pcscd did not receive its private socket as fd 3")
            except FileNotFoundError:
                if self._process.poll() is not None:
                    raise PcscDaemonError(
                        f"pcscd exited with code {self._process.returncode}: {self.log_text()[-500:]}"
                    ) from None
            if time.monotonic() > deadline:
                raise PcscDaemonError("pcscd did not start")
            time.sleep(0.002)  # polling /proc with a deadline until the shell has exec'd pcscd

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def _cleanup_dir(self) -> None:
        if self._given_workdir is None and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def stop(self) -> None:
        """Take the virtual cards out, stop pcscd (SIGTERM, then SIGKILL after 5 s), remove its files."""
        for info in self.slots:
            info.slot().remove()
        self._terminate()
        self._cleanup_dir()

    @property
    def running(self) -> bool:
        """True while the pcscd process is alive."""
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
