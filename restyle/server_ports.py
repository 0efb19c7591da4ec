"""Ports for servers started on this machine (tritonserver, redis-server, the API)."""
import random
import socket
from pathlib import Path

_GIVEN: set[int] = set()  # restartable ports handed out by this process: never twice


def free_port(restartable: bool = False) -> int:
    """A port nothing listens on now (a race with other starters is possible).

    The kernel's pick comes from its ephemeral range, which outgoing connections draw their own
    port from: while a server on such a port is down, a client socket may take it and the restart
    fails (seen in CI). `restartable` picks below that range instead, for a server that is stopped
    and started again on the same port.
    """
    if restartable:
        try:
            low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            low = 32768
        for port in random.sample(range(max(1024, low - 12000), low), 200):
            if port not in _GIVEN and not port_in_use(port) and not port_in_use(port, "127.0.0.1"):
                _GIVEN.add(port)
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "0.0.0.0") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False
