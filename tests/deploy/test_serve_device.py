"""`mptc serve-device` listens on loopback unless told otherwise, warns when told otherwise, and says
where it listens: the server runs any library it is sent, for anyone who can reach its port."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mptc.cli import main
from mptc.deploy.probe import answers
from mptc.deploy.server import free_port
from tests.robustness.harness import FUZZ, assert_refused, record

MPTC = [sys.executable, "-c", "from mptc.cli import main; main()"]


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} writes them) of sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # TCP_LISTEN
                found.add(address)
    return found


def test_it_listens_on_loopback_by_default_and_says_so(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr:
        server = subprocess.Popen(
            [*MPTC, "serve-device", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 60
        while not answers("127.0.0.1", port):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert _listening(port) == {"0100007F"}, "not bound to 127.0.0.1 only"
        deadline = time.monotonic() + 10
        while "listening on" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        banner = log.read_text()
        assert f"listening on 127.0.0.1:{port} (this machine only" in banner and "warning" not in banner
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


def test_another_address_is_bound_only_with_a_warning(tmp_path: Path) -> None:
    """192.0.2.1 (TEST-NET-1) is no address of this machine: the bind fails after the warning."""
    done = subprocess.run(
        [*MPTC, "serve-device", "--host", "192.0.2.1", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 6, done.stderr
    assert lines[0].startswith("mptc: warning: listening on 192.0.2.1:") and "no authentication" in lines[0]
    assert lines[-1].startswith("mptc: error: ") and sum(line.startswith("mptc: error:") for line in lines) == 1
    assert "Traceback" not in done.stderr and done.stdout == ""


@settings(FUZZ, max_examples=30)
@given(
    case=st.one_of(
        st.sampled_from(["", " ", "\t", "127.0.0.1 ", "a b"]).map(lambda host: ["--host", host]),
        st.tuples(
            st.sampled_from(["10.0.0.2", "192.168.1.20", "tracker.lan", "[2001:db8::1]"]),
            st.integers(1, 65535),
            st.sampled_from(["127.0.0.1", "localhost", "::1", None]),
        ).map(lambda t: ["--tracker", f"{t[0]}:{t[1]}", "--key", "rpi4", *(["--host", t[2]] if t[2] else [])]),
        st.sampled_from(["", ":9190", "tracker", "tracker:0", "tracker:x"]).map(
            lambda address: ["--tracker", address, "--key", "rpi4"]
        ),
        st.sampled_from(["", "a b", "rpi4\n"]).map(lambda key: ["--tracker", "127.0.0.1:9190", "--key", key]),
    )
)
def test_settings_that_cannot_serve_are_refused_before_starting(case: list[str]) -> None:
    """An empty host binds every interface; a tracker on another machine would hand out an address
    a loopback server does not listen on; malformed addresses and keys."""
    record("serve-device", *case)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["serve-device", "--port", str(free_port()), *case])
    assert_refused(result, codes=frozenset({2}))
    assert time.monotonic() - started < 5, "a server was started"
