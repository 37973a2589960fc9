"""Ports picked for a later bind come from below the ephemeral range and are free when picked."""

from __future__ import annotations

import socket

from device_kit import ports


def test_a_picked_port_is_below_the_ephemeral_range_and_can_be_bound() -> None:
    start = ports.ephemeral_start()
    for _ in range(20):
        port = ports.free_port()
        assert ports.LOWEST <= port < start
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))


def test_a_pair_is_two_free_ports_in_a_row() -> None:
    base = ports.free_port("0.0.0.0", width=2)
    assert base + 1 < ports.ephemeral_start()
    assert ports.is_free(base, "0.0.0.0")
    assert ports.is_free(base + 1, "0.0.0.0")


def test_a_bound_port_is_not_free_and_a_port_zero_bind_never_lands_below_the_range() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert not ports.is_free(port)
        assert port >= ports.ephemeral_start()  # the kernel's own picks: never where free_port() looks
