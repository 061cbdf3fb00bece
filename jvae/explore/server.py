"""Serving the explorer: a listening socket bound where the user said, and uvicorn answering on it.

The socket is bound here rather than by uvicorn so that the address actually taken (port 0 picks a free
one) is known before the server starts, and a port in use is one line instead of a log record.
"""

from __future__ import annotations

import ipaddress
import socket

import uvicorn

from jvae.base.errors import JvaeError
from jvae.explore.app import create_app
from jvae.explore.explorer import Explorer


class ServeError(JvaeError):
    """An address the explorer cannot listen on."""


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port and listening."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ServeError(f"cannot listen on {host}: {exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def is_loopback(sock: socket.socket) -> bool:
    """Whether only this machine can reach the socket."""
    return ipaddress.ip_address(sock.getsockname()[0]).is_loopback


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if ipaddress.ip_address(host).is_unspecified:  # 0.0.0.0 or :: answers on every address, this one too
        shown = "127.0.0.1" if sock.family == socket.AF_INET else "[::1]"
    return f"http://{shown}:{port}/"


def server(explorer: Explorer, sock: socket.socket) -> uvicorn.Server:
    """An uvicorn server for the explorer (run it with `.run(sockets=[sock])`); quiet but for errors."""
    app = create_app(explorer, loopback_only=is_loopback(sock))
    config = uvicorn.Config(app, log_level="error", access_log=False, lifespan="off", server_header=False)
    return uvicorn.Server(config)
