"""Short-timeout TVM handshakes: is a TVM RPC server, or a TVM tracker, answering at HOST:PORT?

Why: TVM's own client retries a refused address for a minute and waits forever for a handshake
that never comes (a wrong port, a busy or hung server). A plain TCP connect is not enough either:
an emulated server's socket accepts connections seconds before it can serve them.
"""

from __future__ import annotations

import socket
import struct

# A key no server uses: a TVM RPC server answers it with RPC_CODE_MISMATCH and opens no session.
_PROBE_KEY = b"client:mptc-probe"


class NotTvmError(ConnectionError):
    """Something answered at the address, but not the TVM handshake."""


def rpc_handshake(host: str, port: int, timeout: float) -> None:
    """Return if a TVM RPC server answers at host:port; raise an OSError saying why not."""
    from tvm.rpc import base  # deferred: importing TVM takes seconds, `mptc --help` must not

    reply = _exchange(host, port, struct.pack("<ii", base.RPC_MAGIC, len(_PROBE_KEY)) + _PROBE_KEY, timeout)
    if struct.unpack("<i", reply)[0] not in (base.RPC_CODE_MISMATCH, base.RPC_CODE_SUCCESS):
        raise NotTvmError("it answered, but not as a TVM RPC server")


def tracker_handshake(host: str, port: int, timeout: float) -> None:
    """Return if a TVM tracker answers at host:port; raise an OSError saying why not."""
    from tvm.rpc import base

    reply = _exchange(host, port, struct.pack("<i", base.RPC_TRACKER_MAGIC), timeout)
    if struct.unpack("<i", reply)[0] != base.RPC_TRACKER_MAGIC:
        raise NotTvmError("it answered, but not as a TVM tracker")


def answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True if a TVM RPC server answers at host:port now."""
    try:
        rpc_handshake(host, port, timeout)
    except OSError:
        return False
    return True


def _exchange(host: str, port: int, message: bytes, timeout: float) -> bytes:
    """Send ``message`` and read the 4-byte reply, all within ``timeout`` seconds per step."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(message)
        reply = b""
        while len(reply) < 4:
            chunk = sock.recv(4 - len(reply))
            if not chunk:
                raise NotTvmError("it closed the connection without answering the TVM handshake")
            reply += chunk
    return reply
