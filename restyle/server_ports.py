"""Ports for servers started on this machine (tritonserver, redis-server, the API)."""
import socket


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick; a race with other starters is possible)."""
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
