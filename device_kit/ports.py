"""Free TCP ports for a process started later: below the kernel's ephemeral range, so no port-0 bind takes them.

A port found by binding port 0 comes from the ephemeral range, where the kernel hands out the next
port-0 bind of any process (a test server, an outgoing connection). Between our probe and the later
bind, another process may be given the same port; with SO_REUSEPORT (gRPC's default) both then listen
and the kernel splits the connections between them. Ports picked here come from below that range
instead, at random, and are probed free.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Final

RANGE_FILE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST: Final = 20000  # above the registered services a kiosk or platform machine may run
DEFAULT_EPHEMERAL_START: Final = 32768


def ephemeral_start() -> int:
    """The first port the kernel hands out for a port-0 bind (32768 when the setting cannot be read)."""
    try:
        return int(RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_START


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when `port` can be bound on `host` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", *, width: int = 1, attempts: int = 500) -> int:
    """A port P (with P+1 ... P+width-1 when `width` > 1) free on `host`, below the ephemeral range.

    Raises:
        OSError: no such port found in `attempts` random tries (the range is nearly all in use).

    """
    top = ephemeral_start() - width
    if top <= LOWEST:
        raise OSError(f"no port range below the ephemeral ports ({ephemeral_start()}) to pick from")
    for _ in range(attempts):
        base = random.randint(LOWEST, top)
        if all(is_free(base + offset, host) for offset in range(width)):
            return base
    raise OSError(f"no {width} free port(s) in a row found on {host} below {ephemeral_start()}")
