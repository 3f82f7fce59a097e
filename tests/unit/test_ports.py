"""The ports test and benchmark servers listen on come from below the kernel's ephemeral range,
where no outgoing connection (a Kafka or Redis client in any process) can be given one between the
pick and the server's bind: that race once failed CI with "address already in use"."""

import socket
from pathlib import Path

from voxbus.devinfra.ports import LOOPBACK, LOWEST, ephemeral_low, free_ports


class Picks:
    """A random source that answers the ports it is given, in order."""

    def __init__(self, *ports: int) -> None:
        self._ports = list(ports)

    def randrange(self, start: int, stop: int) -> int:
        port = self._ports.pop(0)
        assert start <= port < stop
        return port


def test_free_ports_are_distinct_and_below_the_range_outgoing_connections_use() -> None:
    ports = free_ports(50)
    assert len(set(ports)) == 50
    assert all(LOWEST <= port < ephemeral_low() for port in ports), sorted(ports)


def test_a_port_something_listens_on_is_passed_over() -> None:
    with socket.socket() as busy:
        busy.bind((LOOPBACK, free_ports(1)[0]))
        busy.listen()
        taken = busy.getsockname()[1]
        other = next(port for port in range(LOWEST, ephemeral_low()) if port != taken and _bindable(port))
        assert free_ports(1, rng=Picks(taken, taken, other)) == [other]  # type: ignore[arg-type]


def test_the_range_is_the_kernels_setting_or_linuxs_default(tmp_path: Path) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("40000\t60999\n")
    assert ephemeral_low(setting) == 40000
    assert ephemeral_low(tmp_path / "absent") == 32768


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def test_a_port_handed_out_is_not_handed_out_again_before_it_is_bound() -> None:
    """Two servers started one after the other, neither bound yet: the same seed (the same
    random picks) still gives each its own port (two fault-test processes once shared one)."""
    first = free_ports(1, rng=Picks(23_456))
    second = free_ports(1, rng=Picks(23_456, 23_457))
    assert (first, second) == ([23_456], [23_457])
