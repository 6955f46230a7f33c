"""Device options that cannot mean anything: refused as usage errors before any work.

Generated from the ways each option can be wrong: a ``HOST:PORT`` with no host, no port, a port
out of range or not a number, blanks (``--rpc ''`` once profiled this host instead); counts out of
their range (``--number 2**32`` once reported a median of ``inf`` ms with exit 0); timeouts that
are not a number of seconds; tracker keys TVM cannot send. ``mptc sweep`` must refuse device
combinations that cannot work before it trains its first ticket, not after.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mptc.deploy.settings import MAX_KEY_CHARS, MAX_NUMBER, MAX_REPEAT, MAX_ROUNDS
from tests.deploy.conftest import HOST, _mlp, write_out
from tests.robustness.harness import FUZZ, assert_refused, invoke, record

HOSTS = st.sampled_from(["127.0.0.1", "localhost", "board.lan", "[::1]", "10.0.0.2"])
NOT_A_PORT = st.one_of(
    st.just(""),
    st.just("0"),
    st.integers(65536, 2**64).map(str),
    st.integers(-(2**31), -1).map(str),
    st.text(min_size=1, max_size=6).filter(lambda t: not (t.isascii() and t.isdigit())),
    st.sampled_from(["９０９０", "٩٠", "90 90", "9090 ", "0x50", "1e3"]),  # digits that int() reads, or nearly
)
BAD_ADDRESSES = st.one_of(
    st.just(""),
    st.text(max_size=16).filter(lambda t: ":" not in t),  # no port at all
    st.integers(1, 65535).map(lambda p: f":{p}"),  # no host
    st.tuples(HOSTS, NOT_A_PORT).map(lambda hp: f"{hp[0]}:{hp[1]}"),
    st.tuples(st.sampled_from([" ", "\t", "a b", "\n"]), st.integers(1, 65535)).map(lambda hp: f"{hp[0]}:{hp[1]}"),
)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return write_out(tmp_path_factory.mktemp("options") / "out", _mlp(), HOST, None)


@settings(FUZZ, max_examples=80)
@given(option=st.sampled_from(["--rpc", "--tracker"]), address=BAD_ADDRESSES)
def test_malformed_addresses_are_usage_errors(out, option, address):
    record("profile", option, address)
    result = invoke(["profile", out, option, address, "--key", "rpi4", "--timeout", "0.5"])
    assert_refused(result, out / "profile.json", codes=frozenset({2}))
    assert option in result.stderr


def _parses(text: str, kind: type) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def _counts(most: int) -> st.SearchStrategy:
    return st.one_of(
        st.integers(max_value=0),
        st.integers(most + 1, 2**64),
        st.text(max_size=6).filter(lambda t: not _parses(t, int)),
    )


SECONDS = st.one_of(
    st.floats(max_value=0.0),
    st.floats(min_value=86400.5),  # more than a day
    st.sampled_from([float("nan"), float("inf")]),
    st.text(max_size=6).filter(lambda t: not _parses(t, float)),
)
BAD_VALUES = st.one_of(
    _counts(MAX_REPEAT).map(lambda v: ("--repeat", v)),
    _counts(MAX_NUMBER).map(lambda v: ("--number", v)),
    _counts(MAX_ROUNDS).map(lambda v: ("--rounds", v)),
    st.one_of(st.integers(max_value=0), st.text(max_size=4).filter(lambda t: not _parses(t, int))).map(
        lambda v: ("--top-k", v)
    ),
    SECONDS.map(lambda v: ("--timeout", v)),
    SECONDS.map(lambda v: ("--queue-timeout", v)),
)


@settings(FUZZ, max_examples=60)
@given(option_value=BAD_VALUES)
def test_counts_and_timeouts_out_of_range(out, option_value):
    option, value = option_value
    record("profile", option, str(value))
    result = invoke(["profile", out, option, value])
    assert_refused(result, out / "profile.json", codes=frozenset({2}))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "1e9", "4294967296"])
@pytest.mark.parametrize("option", ["--timeout", "--queue-timeout", "--number"])
def test_the_values_that_once_passed(out, option, value):
    """``--number 2**32`` profiled with a median of inf ms; a NaN timeout would never expire."""
    if option == "--number" and value in ("nan", "inf", "-inf", "1e9"):
        value = str(MAX_NUMBER + 1)
    record("profile", option, value)
    assert_refused(invoke(["profile", out, option, value]), out / "profile.json", codes=frozenset({2}))


@settings(FUZZ, max_examples=40)
@given(
    key=st.one_of(
        st.just(""),
        st.text(min_size=1, max_size=8).map(lambda t: t + " rpi4"),
        st.text(min_size=1, max_size=4).map(lambda t: "rpi\t" + t),
        st.text(alphabet="ab", min_size=MAX_KEY_CHARS + 1, max_size=MAX_KEY_CHARS + 40),
        st.sampled_from(["\x00", "rpi4\n", "\x1b[31m"]),
    )
)
def test_tracker_keys_tvm_cannot_send(out, key):
    record("profile --key", key)
    result = invoke(["profile", out, "--tracker", "127.0.0.1:9", "--key", key, "--timeout", "0.5"])
    assert_refused(result, out / "profile.json", codes=frozenset({2}))


# --- sweep: refused before the first ticket is trained ------------------------------------------

SWEEP_MISTAKES = {
    # a board with the host's target: exit 4, as `mptc compile --target x86 --board rpi4`
    "board on x86": lambda board, address: (["--target", "x86", "--board", board], 4),
    "rpc and tracker": lambda board, address: (
        ["--target", "arm", "--board", board, "--rpc", address, "--tracker", address, "--key", board],
        2,
    ),
    "tracker without key": lambda board, address: (["--target", "arm", "--board", board, "--tracker", address], 2),
    "emulate x86": lambda board, address: (["--target", "x86", "--emulate", board], 2),
    "emulate cuda": lambda board, address: (["--target", "cuda", "--emulate", board], 2),
    "arm with nowhere to run": lambda board, address: (["--target", "arm", "--board", board], 2),
    "bad address": lambda board, address: (["--target", "arm", "--board", board, "--rpc", address + ":x"], 2),
    "bad repeat": lambda board, address: (["--repeat", str(MAX_REPEAT + 1)], 2),
}


@settings(FUZZ, max_examples=16)
@given(
    mistake=st.sampled_from(sorted(SWEEP_MISTAKES)),
    board=st.sampled_from(["rpi4", "rpi5", "jetson-orin"]),
    address=st.sampled_from(["127.0.0.1:9", "board.lan:9090"]),
    sparsity=st.sampled_from(["0.5", "0.5,0.9"]),
)
def test_sweeps_that_cannot_run_are_refused_before_training(tmp_path_factory, mistake, board, address, sparsity):
    args, code = SWEEP_MISTAKES[mistake](board, address)
    out = tmp_path_factory.mktemp("sweep") / "out"
    record("sweep", *args)
    started = time.monotonic()
    result = invoke(["sweep", "--sparsity", sparsity, "--epochs", "1", "--width", "0.25", *args, "-o", out])
    elapsed = time.monotonic() - started
    assert_refused(result, out, codes=frozenset({code}))
    assert elapsed < 30, f"{mistake}: refused after {elapsed:.1f} s: was a ticket trained first?"
