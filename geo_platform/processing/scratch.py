"""Temporary files of runs, in a folder per run under the platform's scratch directory.

A run killed midway (``kill -9``, a lost machine) cannot clean up after itself: the
next run removes the folders of runs that are no longer running.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def run_scratch(root: Path, run_id: str, is_running: Callable[[str], bool]) -> Path:
    """A fresh folder for ``run_id``; the folders of finished or dead runs are removed."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in root.iterdir():
        if folder.name != run_id and folder.is_dir() and not is_running(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
    folder = root / run_id
    folder.mkdir(exist_ok=True)
    return folder


@contextmanager
def scratch_folder(root: Path, run_id: str, is_running: Callable[[str], bool]) -> Iterator[Path]:
    """``run_scratch`` for the duration of the block, removed after it."""
    folder = run_scratch(root, run_id, is_running)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
