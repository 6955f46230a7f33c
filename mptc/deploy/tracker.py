"""A TVM tracker client with a deadline on every reply and a schema check on every answer.

TVM's own client (``tvm.rpc.connect_tracker``) waits without a bound for each reply, believes the
length a reply announces (a peer can announce gigabytes) and indexes the JSON it gets without
checking it: a broken or hostile tracker hangs or crashes it. This one speaks the same protocol
(``tvm/rpc/tracker.py``: the 4-byte ``RPC_TRACKER_MAGIC`` both ways, then messages of a
little-endian int32 length and that much JSON) over a plain socket:

* every step has a deadline on the whole reply, not on each ``recv`` (a peer sending a byte a
  second never times out a per-``recv`` timeout);
* a reply may announce at most :data:`MAX_REPLY_BYTES`;
* a reply must be UTF-8 JSON of the shape TVM's tracker sends, checked before use.

Every failure is a :class:`~mptc.errors.DeviceError` naming the tracker and the step.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from tvm.rpc.base import RPC_TRACKER_MAGIC, TrackerCode

from mptc.errors import DeviceError

MAX_REPLY_BYTES = 4 << 20  # a summary lists every server; 4 MiB is tens of thousands of them
PRIORITY = 1  # what TVM's client asks with


@dataclass(frozen=True)
class Grant:
    """The board a tracker handed out: connect to ``host:port`` with ``match_key``."""

    host: str
    port: int
    match_key: str


class TrackerClient:
    """A connection to a TVM tracker at ``host:port`` (a context manager); ``timeout`` bounds each step."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.address = f"{host}:{port}"
        self.timeout = timeout
        hint = "is a TVM tracker (python -m tvm.exec.rpc_tracker) running there?"
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as error:
            raise DeviceError(
                f"cannot reach the tracker at {self.address}: no answer within {timeout:g} s ({hint})"
            ) from error
        except OSError as error:
            raise DeviceError(
                f"cannot reach the tracker at {self.address}: {error.strerror or error} ({hint})"
            ) from error
        try:
            self._sock.sendall(struct.pack("<i", RPC_TRACKER_MAGIC))
            reply = self._receive(4, "the handshake")
        except BaseException:
            self.close()
            raise
        if struct.unpack("<i", reply)[0] != RPC_TRACKER_MAGIC:
            self.close()
            raise self._error("it answered, but not the TVM tracker handshake", "is this the tracker's port?")

    def __enter__(self) -> TrackerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def keys(self) -> list[str]:
        """The board keys registered with the tracker (``rpi4``), sorted; from its summary."""
        reply = self._call([TrackerCode.SUMMARY], "the summary", self.timeout)
        summary = _success(reply)
        if not isinstance(summary, dict) or not isinstance(summary.get("server_info"), list):
            raise self._malformed("the summary", reply, "expected an object with a 'server_info' list")
        keys = set()
        for item in summary["server_info"]:
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                raise self._malformed("the summary", reply, "a 'server_info' entry without a 'key' string")
            keys.add(item["key"].split(":", 1)[-1])  # "server:rpi4" -> "rpi4"
        return sorted(keys)

    def request(self, key: str, queue_timeout: float) -> Grant:
        """The next free board of kind ``key``: waits in the tracker's queue up to ``queue_timeout`` s."""
        late = (
            f"no board '{key}' became free within {queue_timeout:g} s (every one is busy, or the tracker stalled; "
            "--queue-timeout)"
        )
        reply = self._call([TrackerCode.REQUEST, key, "", PRIORITY], f"the request for '{key}'", queue_timeout, late)
        grant = _success(reply)
        if (
            not isinstance(grant, list)
            or len(grant) != 3
            or not isinstance(grant[0], str)
            or not _one_word(grant[0])
            or isinstance(grant[1], bool)
            or not isinstance(grant[1], int)
            or not 0 < grant[1] < 65536
            or not isinstance(grant[2], str)
            or not _one_word(grant[2])
        ):
            raise self._malformed(f"the request for '{key}'", reply, "expected [0, [host, port, key]]")
        return Grant(grant[0], grant[1], grant[2])

    def _call(self, message: list[Any], step: str, timeout: float, late: str | None = None) -> Any:
        data = json.dumps(message).encode()
        try:
            self._sock.settimeout(self.timeout)
            self._sock.sendall(struct.pack("<i", len(data)) + data)
        except OSError as error:
            raise self._error(f"cannot send the request for {step}: {error.strerror or error}") from error
        (size,) = struct.unpack("<i", self._receive(4, step, timeout, late))
        if not 0 <= size <= MAX_REPLY_BYTES:
            raise self._error(
                f"its reply to {step} announces {size:,} bytes (at most {MAX_REPLY_BYTES:,} expected)",
                "is this a TVM tracker?",
            )
        body = self._receive(size, step, timeout, late)
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError as error:  # UnicodeDecodeError is a ValueError too
            raise self._error(f"its reply to {step} is not JSON ({error})", "is this a TVM tracker?") from error

    def _receive(self, size: int, step: str, timeout: float | None = None, late: str | None = None) -> bytes:
        """Exactly ``size`` bytes, all of them within ``timeout`` (default: the client's) seconds;
        ``late`` says what a timeout means, if not the default."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        data = bytearray()
        try:
            while len(data) < size:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self._sock.settimeout(left)
                chunk = self._sock.recv(min(size - len(data), 1 << 16))
                if not chunk:
                    raise self._error(f"it closed the connection during {step}", "did the tracker stop?")
                data += chunk
        except TimeoutError as error:
            raise self._error(late or f"no complete reply to {step} within {limit:g} s (--timeout)") from error
        except OSError as error:
            raise self._error(f"the connection failed during {step}: {error.strerror or error}") from error
        return bytes(data)

    def _malformed(self, step: str, reply: Any, why: str) -> DeviceError:
        shown = json.dumps(reply)
        return self._error(
            f"its reply to {step} is not what a TVM tracker sends ({why}, got {shown[:120]}"
            f"{'...' if len(shown) > 120 else ''})"
        )

    def _error(self, what: str, hint: str = "") -> DeviceError:
        return DeviceError(f"the tracker at {self.address}: {what}{f' ({hint})' if hint else ''}")


def _success(reply: Any) -> Any:
    """The payload of a ``[0, payload]`` reply, or None when the reply is not one (the caller says why)."""
    if isinstance(reply, list) and len(reply) == 2 and type(reply[0]) is int and reply[0] == TrackerCode.SUCCESS:
        return reply[1]
    return None


def _one_word(text: str) -> bool:
    """A host or key TVM can use and a message can quote: printable, no blanks, not empty."""
    return bool(text) and text.isprintable() and not any(c.isspace() for c in text)
