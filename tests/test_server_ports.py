"""Ports for servers a test or the soak stops and starts again on the same number."""
import socket
from pathlib import Path

from restyle.server_ports import free_port, port_in_use


def test_restartable_ports_lie_below_the_ephemeral_range_and_are_never_given_twice():
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port(restartable=True) for _ in range(20)]
    assert len(set(ports)) == 20 and all(1024 <= p < low for p in ports)
    with socket.socket() as s:  # free now: a server can bind it
        s.bind(("0.0.0.0", ports[0]))
        s.listen()
        assert port_in_use(ports[0])


def test_a_plain_free_port_is_the_kernels_pick_and_bindable():
    port = free_port()
    assert not port_in_use(port)
