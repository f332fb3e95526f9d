"""A byte-count progress bar that only shows on an interactive terminal (never in CI or when piped)."""
from __future__ import annotations

import contextlib
import os
import sys


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


@contextlib.contextmanager
def progress_bar(total: int, description: str):
    """Yield `advance(n)`; draws a rich bar on a tty, does nothing otherwise."""
    if not interactive():
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  transient=True) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n: prog.advance(task, n)
