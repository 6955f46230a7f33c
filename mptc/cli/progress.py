"""Progress bars on stderr for the steps that take seconds; silent when stderr is not a terminal.

stdout carries only the commands' results, so a pipe or a test sees the same output with or
without a terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import click
from tqdm import tqdm

STAGE_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}]"  # no rate: stages differ in length


def bar(**kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, disabled (``disable=None``) when stderr is not a terminal."""
    return tqdm(disable=None, dynamic_ncols=True, **kwargs)


def echo(message: str) -> None:
    """``click.echo`` to stdout while bars are shown: they are cleared first and drawn again after."""
    with tqdm.external_write_mode():
        click.echo(message)


class StageBar:
    """A bar over a fixed sequence of named stages, called with each stage's name as it starts.

    The bar stands at the stage running (``i`` of ``n`` done while stage ``i`` runs) and fills
    when the ``with`` block ends without an error.
    """

    def __init__(self, stages: Sequence[str], title: str = "", **kwargs: Any) -> None:
        self.stages = tuple(stages)
        self.title = title
        self.bar = bar(total=len(self.stages), desc=title, bar_format=STAGE_FORMAT, **kwargs)

    def __call__(self, stage: str) -> None:
        self.bar.set_description_str(f"{self.title}: {stage}" if self.title else stage, refresh=False)
        self.bar.update(self.stages.index(stage) - self.bar.n)
        self.bar.refresh()

    def restart(self, title: str) -> None:
        """Back to the first stage under a new title (the next point of a sweep)."""
        self.title = title
        self.bar.set_description_str(title, refresh=False)
        self.bar.reset()

    def __enter__(self) -> StageBar:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()
