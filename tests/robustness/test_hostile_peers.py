"""`mptc profile` against RPC servers and trackers that stall, lie or talk nonsense, on loopback.

Each case starts a scripted peer (:mod:`tests.robustness.peers`) that plays a broken or hostile
server: it accepts and then says nothing, answers the probe and stalls TVM's own handshake,
sends garbage, announces a reply of gigabytes, sends JSON of the wrong shape, or (a tracker)
hands out the address of a server that stalls. ``profile`` runs with ``--timeout 0.5`` and must
fail with exit 6, one ``mptc: error:`` line naming the peer's address, nothing on stdout, no
``profile.json``, and within :data:`WALL_S` seconds: before every step had a deadline, most of
these cases hung forever.
"""

from __future__ import annotations

import json
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm.rpc.base import RPC_CODE_MISMATCH, RPC_CODE_SUCCESS, RPC_TRACKER_MAGIC, TrackerCode

from mptc.deploy.tracker import MAX_REPLY_BYTES
from tests.deploy.conftest import HOST, _mlp, write_out
from tests.robustness.harness import FUZZ, assert_refused, invoke, record
from tests.robustness.peers import (
    Peer,
    json_message,
    message,
    receive,
    receive_message,
    rpc_greeting,
    summary,
    tracker_greeting,
)

TIMEOUT = "0.5"
QUEUE_TIMEOUT = "1"
# Every step of a profile gets 0.5 s here (the queue 1 s): about five steps, plus a second for a
# stalled call's thread to end and the CLI's own work. A hang shows up as a test that fails here.
WALL_S = 15.0
KEY = "rpi4"

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """A compiled folder for this host; the peers are reached only after it has been checked."""
    return write_out(tmp_path_factory.mktemp("hostile") / "out", _mlp(), HOST, None)


def profile_refused(out, device: list[str], named: str, what: str) -> str:
    """Run ``profile`` against a peer; check the refusal and its time; the error line."""
    record("profile against a hostile peer", what)
    started = time.monotonic()
    result = invoke(["profile", out, *device, "--timeout", TIMEOUT, "--queue-timeout", QUEUE_TIMEOUT, "--repeat", "1"])
    elapsed = time.monotonic() - started
    assert_refused(result, out / "profile.json", codes=frozenset({6}))
    line = result.stderr.strip().splitlines()[-1]
    assert named in line, f"the error does not name {named}: {line}"
    assert elapsed < WALL_S, f"{what}: refused only after {elapsed:.1f} s: {line}"
    return line


# --- RPC servers: connection 0 is mptc's probe, connection 1 TVM's own session -------------------

RPC_BEHAVIOURS = (
    "silent",  # accepts, never reads or answers
    "reads-then-silent",  # reads the probe's handshake, never answers
    "closes",  # closes at once
    "garbage",  # answers the probe with bytes that are not TVM's
    "probe-ok-session-silent",  # answers the probe, then stalls TVM's handshake
    "probe-ok-session-mismatch",  # answers the probe, then refuses TVM's key
    "probe-ok-session-garbage",  # answers the probe, then a success code and garbage
    "probe-ok-session-partial",  # answers the probe, then half of a success reply
)


def rpc_script(behaviour: str, noise: bytes, key_length: int):
    def script(conn, index, stop):
        if behaviour == "silent":
            return
        if behaviour == "closes":
            conn.close()
            return
        if rpc_greeting(conn, stop) is None or behaviour == "reads-then-silent":
            return
        if behaviour == "garbage":
            conn.sendall(noise[:3] if noise[:4] == struct.pack("<i", RPC_CODE_MISMATCH) else noise)
            return
        if index == 0:
            conn.sendall(struct.pack("<i", RPC_CODE_MISMATCH))  # what a real server says to the probe
            conn.close()
            return
        if behaviour == "probe-ok-session-mismatch":
            conn.sendall(struct.pack("<i", RPC_CODE_MISMATCH))
        elif behaviour == "probe-ok-session-garbage":
            conn.sendall(struct.pack("<ii", RPC_CODE_SUCCESS, key_length) + noise)
        elif behaviour == "probe-ok-session-partial":
            conn.sendall(struct.pack("<i", RPC_CODE_SUCCESS)[:2])

    return script


@settings(FUZZ, max_examples=24)
@given(
    behaviour=st.sampled_from(RPC_BEHAVIOURS),
    noise=st.binary(min_size=0, max_size=64),
    key_length=st.integers(-(2**31), 2**16),  # no larger: TVM allocates what a server announces
)
def test_rpc_servers_that_stall_or_talk_nonsense(out, behaviour, noise, key_length):
    with Peer(rpc_script(behaviour, noise, key_length)) as peer:
        profile_refused(out, ["--rpc", peer.address], peer.address, f"rpc {behaviour} {noise!r} {key_length}")


# --- trackers --------------------------------------------------------------------------------------

TRACKER_BEHAVIOURS = (
    "silent",
    "wrong-magic",
    "closes-after-magic",
    "summary-silent",
    "summary-huge",  # announces more than MAX_REPLY_BYTES (up to 2 GiB)
    "summary-negative-size",
    "summary-not-json",
    "summary-trickle",  # a valid length, then a byte now and then: no reply is complete in time
    "summary-wrong-json",  # JSON, but not [0, {"server_info": [{"key": ...}, ...]}]
    "summary-without-the-key",
    "request-silent",  # a board is registered, and the request is never answered (a queue)
    "request-wrong-json",
    "request-closed-port",  # hands out a port nobody listens on
    "request-stalling-server",  # hands out a server that accepts and stalls
)


def well_formed(value: object) -> bool:
    """Whether a drawn JSON value has the shape of a summary or a grant (then it is no wrong one)."""
    if not (isinstance(value, list) and len(value) == 2 and type(value[0]) is int and value[0] == 0):
        return False
    payload = value[1]
    if isinstance(payload, dict) and isinstance(payload.get("server_info"), list):
        return all(isinstance(item, dict) and isinstance(item.get("key"), str) for item in payload["server_info"])
    return (
        isinstance(payload, list)
        and len(payload) == 3
        and isinstance(payload[0], str)
        and type(payload[1]) is int
        and isinstance(payload[2], str)
    )


NEAR_MISSES = [
    [0, {}],
    [0, {"server_info": "rpi4"}],
    [0, {"server_info": [1, 2]}],
    [0, {"server_info": [{"key": 4}]}],
    [1, {"server_info": []}],
    [True, {"server_info": []}],
    {"server_info": []},
    [0, ["127.0.0.1", 0, "rpi4:0.5"]],
    [0, ["127.0.0.1", 70000, "rpi4:0.5"]],
    [0, ["127.0.0.1", "9090", "rpi4:0.5"]],
    [0, ["127.0.0.1", True, "rpi4:0.5"]],
    [0, ["", 9090, "rpi4:0.5"]],
    [0, ["127.0.0.1", 9090]],
    [0, ["127.0.0.1", 9090, None]],
    [0, ["127.0.0.1\nmptc: error: forged", 9090, "rpi4:0.5"]],
    [0, ["127.0.0.1", 9090, "rpi4 -timeout=1"]],
    [-1],
    0,
    "",
]


def tracker_script(behaviour: str, wrong: object, noise: bytes, size: int, redirect: int, others: list[str]):
    def script(conn, index, stop):
        if behaviour == "silent":
            return
        if behaviour == "wrong-magic":
            receive(conn, 4, stop)
            magic = noise[:4].ljust(4, b"\0")
            conn.sendall(magic if magic != struct.pack("<i", RPC_TRACKER_MAGIC) else b"\0\0\0\0")
            return
        if not tracker_greeting(conn, stop):
            return
        if behaviour == "closes-after-magic":
            conn.close()
            return
        request = json.loads(receive_message(conn, stop) or b"null")
        if behaviour == "summary-silent" or request != [TrackerCode.SUMMARY]:
            return
        if behaviour == "summary-huge":
            conn.sendall(struct.pack("<i", size) + b"[0, {")
        elif behaviour == "summary-negative-size":
            conn.sendall(struct.pack("<i", -size))
        elif behaviour == "summary-not-json":
            conn.sendall(message(b"\xff" + noise))
        elif behaviour == "summary-trickle":
            body = json.dumps(summary(KEY)).encode()
            conn.sendall(struct.pack("<i", len(body)))
            for byte in body:
                if stop.wait(0.4):
                    return
                conn.sendall(bytes([byte]))
        elif behaviour == "summary-wrong-json":
            conn.sendall(json_message(wrong))
        elif behaviour == "summary-without-the-key":
            conn.sendall(json_message(summary(*others)))
        else:
            conn.sendall(json_message(summary(KEY)))
            request = json.loads(receive_message(conn, stop) or b"null")
            if not (isinstance(request, list) and request[:1] == [TrackerCode.REQUEST]):
                return
            if behaviour == "request-wrong-json":
                conn.sendall(json_message(wrong))
            elif behaviour in ("request-closed-port", "request-stalling-server"):
                conn.sendall(json_message([TrackerCode.SUCCESS, ["127.0.0.1", redirect, f"{KEY}:0.25"]]))

    return script


@settings(FUZZ, max_examples=40)
@given(
    behaviour=st.sampled_from(TRACKER_BEHAVIOURS),
    # drawn JSON that happens to be well formed would be a valid reply (or send TVM to a drawn host)
    wrong=st.one_of(st.sampled_from(NEAR_MISSES), JSON.filter(lambda v: not well_formed(v))),
    noise=st.binary(min_size=0, max_size=64),
    size=st.integers(MAX_REPLY_BYTES + 1, 2**31 - 1),
    others=st.lists(st.text(max_size=10).filter(lambda k: k != KEY), max_size=30),  # blanks, newlines, ...
)
def test_trackers_that_stall_or_talk_nonsense(out, behaviour, wrong, noise, size, others):
    with Peer(lambda conn, index, stop: None) as stalling, Peer(lambda conn, index, stop: conn.close()) as closed:
        closed.close()  # nobody listens on its port any more
        redirect = stalling.port if behaviour == "request-stalling-server" else closed.port
        with Peer(tracker_script(behaviour, wrong, noise, size, redirect, others)) as tracker:
            line = profile_refused(
                out,
                ["--tracker", tracker.address, "--key", KEY],
                tracker.address,
                f"tracker {behaviour} {json.dumps(wrong)[:200]} {noise!r} {size} {others!r}",
            )
    if behaviour == "request-stalling-server":
        assert stalling.address in line and "no answer within" in line, line


@pytest.mark.parametrize("behaviour", ["summary-wrong-json", "request-wrong-json"])
@pytest.mark.parametrize("wrong", NEAR_MISSES, ids=lambda value: json.dumps(value)[:40])
def test_replies_one_field_away_from_tvms(out, behaviour, wrong):
    """Each near miss as the summary and as the grant: a wrong type, a port out of range, a host
    or key with a blank or a line break in it (which TVM would send on, or a message would print)."""
    with Peer(tracker_script(behaviour, wrong, b"", MAX_REPLY_BYTES + 1, 9, [])) as tracker:
        line = profile_refused(
            out, ["--tracker", tracker.address, "--key", KEY], tracker.address, f"{behaviour} {json.dumps(wrong)}"
        )
    assert "not what a TVM tracker sends" in line, line
