"""Progress bars: drawn on a terminal, silent elsewhere, at the stage running."""

import io

import pytest

from mptc.cli.progress import StageBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_stage_bar_stands_at_the_stage_running_and_fills_at_the_end() -> None:
    terminal = Terminal()
    with StageBar(("import", "build", "write"), title="compile", file=terminal) as stage:
        stage("import")
        stage("build")
        assert stage.bar.n == 1
        stage.restart("again")
        assert stage.bar.n == 0
        stage("write")
    assert stage.bar.n == 3
    assert "compile: build" in terminal.getvalue() and "3/3" in terminal.getvalue()


def test_a_bar_is_silent_when_stderr_is_not_a_terminal() -> None:
    pipe = io.StringIO()
    with StageBar(("import", "build"), file=pipe) as stage:
        stage("build")
    assert pipe.getvalue() == ""


def test_a_failed_stage_leaves_the_bar_where_it_stopped() -> None:
    with pytest.raises(RuntimeError), StageBar(("import", "build"), file=Terminal()) as stage:
        stage("build")
        raise RuntimeError
    assert stage.bar.n == 1
