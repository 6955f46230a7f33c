"""Hostile network peers on loopback: a listening socket that plays a script with each connection.

A :class:`Peer` listens on 127.0.0.1 only, hands the n-th connection to ``script(conn, n, stop)``
in a thread, and stops by itself: on leaving its ``with`` block, or after ``lifetime`` seconds at
the latest, it closes its listening socket and every connection, and a script waits only through
``stop.wait(...)``, so no script outlives the peer. A peer that "stalls" keeps the connection open
and says nothing until then.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable

from tvm.rpc.base import RPC_CODE_MISMATCH, RPC_CODE_SUCCESS, RPC_MAGIC, RPC_TRACKER_MAGIC, TrackerCode

Script = Callable[[socket.socket, int, threading.Event], None]


class Peer:
    """A scripted TCP peer on ``127.0.0.1:port`` (a context manager)."""

    def __init__(self, script: Script, lifetime: float = 60.0) -> None:
        self.script = script
        self.stop = threading.Event()
        self.connections: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._timer = threading.Timer(lifetime, self.close)
        self._timer.daemon = True

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Peer:
        self._timer.start()
        accept = threading.Thread(target=self._accept, name="hostile-peer", daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def close(self) -> None:
        self.stop.set()
        self._timer.cancel()
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    def _accept(self) -> None:
        count = 0
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self.connections.append(conn)
            worker = threading.Thread(target=self._play, args=(conn, count), daemon=True)
            worker.start()
            self._threads.append(worker)
            count += 1

    def _play(self, conn: socket.socket, index: int) -> None:
        with contextlib.suppress(OSError, ConnectionError, struct.error, ValueError):
            self.script(conn, index, self.stop)
            self.stop.wait()  # then hold the connection open, saying nothing, until the peer stops


def receive(conn: socket.socket, size: int, stop: threading.Event) -> bytes:
    """``size`` bytes from ``conn`` ("" once the peer stops or the other end closes)."""
    conn.settimeout(0.1)
    data = b""
    while len(data) < size and not stop.is_set():
        try:
            chunk = conn.recv(size - len(data))
        except TimeoutError:
            continue
        if not chunk:
            break
        data += chunk
    return data


def receive_message(conn: socket.socket, stop: threading.Event) -> bytes:
    """One length-prefixed message of TVM's tracker protocol (its JSON bytes)."""
    header = receive(conn, 4, stop)
    if len(header) < 4:
        return b""
    return receive(conn, struct.unpack("<i", header)[0], stop)


def message(data: bytes) -> bytes:
    """``data`` with TVM's length prefix."""
    return struct.pack("<i", len(data)) + data


def json_message(value: object) -> bytes:
    return message(json.dumps(value).encode())


def tracker_greeting(conn: socket.socket, stop: threading.Event) -> bool:
    """Play a tracker's handshake; False if the client sent something else."""
    if receive(conn, 4, stop) != struct.pack("<i", RPC_TRACKER_MAGIC):
        return False
    conn.sendall(struct.pack("<i", RPC_TRACKER_MAGIC))
    return True


def rpc_greeting(conn: socket.socket, stop: threading.Event) -> str | None:
    """Read a TVM RPC client's handshake (magic, key length, key); the key, or None."""
    header = receive(conn, 8, stop)
    if len(header) < 8:
        return None
    magic, length = struct.unpack("<ii", header)
    if magic != RPC_MAGIC or not 0 <= length < 4096:
        return None
    return receive(conn, length, stop).decode(errors="replace")


def summary(*keys: str) -> list[object]:
    """A well-formed SUMMARY reply listing servers of these keys."""
    return [
        TrackerCode.SUCCESS,
        {"queue_info": {}, "server_info": [{"key": f"server:{k}", "addr": ["127.0.0.1", 1]} for k in keys]},
    ]


__all__ = [
    "RPC_CODE_MISMATCH",
    "RPC_CODE_SUCCESS",
    "Peer",
    "json_message",
    "message",
    "receive",
    "receive_message",
    "rpc_greeting",
    "summary",
    "tracker_greeting",
]
