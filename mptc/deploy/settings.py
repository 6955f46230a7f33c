"""What a profile may be asked: bounds and defaults of its counts and timeouts, and device addresses.

Light to import (no TVM): the CLI reads these when it declares its options, the library checks
the same bounds when it is called directly, so the two never disagree.

Every network step of a profile has a deadline, because a peer that accepts a connection and
then says nothing would otherwise hold ``mptc profile`` forever: connecting, each handshake,
each reply of a tracker, the upload, the load and each call get :data:`DEFAULT_TIMEOUT_S` (or
``--timeout``); a run or a timing call gets that plus what its runs should take. Waiting in a
tracker's queue for a free board is another matter (a colleague may hold the only board for
minutes): it has its own, longer bound, :data:`DEFAULT_QUEUE_TIMEOUT_S` (``--queue-timeout``).
"""

from __future__ import annotations

import math

from mptc.errors import UsageError

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_QUEUE_TIMEOUT_S = 600.0
MAX_TIMEOUT_S = 24 * 3600.0
# Beyond these a count is a typo, not a measurement: repeat x number runs of even a 1 us model
# at the limits take hours, and TVM's time evaluator counts in 32-bit integers.
MAX_REPEAT = 100_000
MAX_NUMBER = 1_000_000
MAX_ROUNDS = 10_000
ROUNDS = 5  # interleaved rounds of a comparison by default: enough for a median one noisy round cannot move
MAX_KEY_CHARS = 128


def parse_address(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ``option`` names the flag in the error.

    Raises:
        UsageError: no host, no port, a port that is not a number in 1..65535, or blanks.
    """
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]:9090
    if (
        not sep
        or not host
        or not port.isascii()
        or not port.isdigit()
        or not 0 < int(port) < 65536
        or any(c.isspace() or not c.isprintable() for c in host)
    ):
        raise UsageError(f"{option} expects HOST:PORT with a port in 1..65535 (e.g. 192.168.1.20:9090), got {text!r}")
    return host, int(port)


def check_device_options(rpc: str | None, tracker: str | None, key: str | None) -> None:
    """Refuse device options that cannot go together: a server and a tracker, a tracker without a key."""
    if rpc is not None and tracker is not None:
        raise UsageError("give either --rpc HOST:PORT or --tracker HOST:PORT --key KEY, not both")
    if tracker is not None and not key:
        raise UsageError("--tracker needs --key: the kind of board to ask the tracker for (e.g. rpi4)")


def check_key(key: str) -> str:
    """A tracker key (``rpi4``): TVM sends it in a space-separated header, so one word of printable characters."""
    if not key or len(key) > MAX_KEY_CHARS or any(c.isspace() or not c.isprintable() for c in key):
        raise UsageError(
            f"--key expects the kind of board as one word of at most {MAX_KEY_CHARS} printable characters "
            f"(e.g. rpi4), got {key!r}"
        )
    return key


def check_seconds(seconds: float, option: str) -> float:
    """A timeout: a finite number of seconds above 0 and at most a day."""
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT_S):
        raise UsageError(f"{option} expects seconds above 0 and at most {MAX_TIMEOUT_S:g}, got {seconds!r}")
    return seconds


def check_counts(repeat: int, number: int, rounds: int, top_k: int | None) -> None:
    """Raise unless every count is within its bound (see the constants above)."""
    for name, value, most in (
        ("repeat", repeat, MAX_REPEAT),
        ("number", number, MAX_NUMBER),
        ("rounds", rounds, MAX_ROUNDS),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise UsageError(f"{name} must be an integer in 1..{most}, got {value!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise UsageError(f"top_k must be an integer of at least 1, got {top_k!r}")
