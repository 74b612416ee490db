"""What a run leaves on its machine, and runs whose process died.

A run killed midway (``kill -9``, a lost machine) cannot clean up after itself nor say
that it failed: Dagster's run monitoring restarts or fails only runs that a run launcher
started and can ask about, not the in-process runs of ``geo-platform ingest``. So every
run records which process executes it (``WORKER_TAG``), and each new run (and each
sensor tick) marks the STARTED runs whose process is gone as failed, then removes the
scratch folders of runs that are no longer running.
"""

import multiprocessing
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from geo_platform.processing.scratch import scratch_folder
from geo_platform.settings import get_platform_settings

# host:pid:start time of the process executing the run (the start time tells a reused
# pid from the original one).
WORKER_TAG = "geo_platform/worker"
_UNFINISHED = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]


def this_worker() -> str:
    """The process that executes this run: this one for in-process runs (the CLI's);
    for runs the daemon launched, where each step runs in a child process of the run's
    worker (Dagster's multiprocess executor), that parent."""
    parent = multiprocessing.parent_process()
    pid = parent.pid if parent is not None and parent.pid is not None else os.getpid()
    return worker_of_pid(pid)


def worker_of_pid(pid: int) -> str:
    """The worker tag of a process of this machine."""
    return f"{socket.gethostname()}:{pid}:{_process_start(pid)}"


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat``); empty
    when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces; the fields after it are plain.
    return stat.rsplit(")", 1)[1].split()[19]


def worker_alive(tag: str) -> bool | None:
    """Whether the process a worker tag names still runs; None when it is on another
    machine (nothing to tell from here)."""
    host, pid, start = tag.rsplit(":", 2)
    if host != socket.gethostname():
        return None
    return _process_start(int(pid)) == start


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the unfinished runs of this machine whose process died; their ids."""
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_UNFINISHED)):
        tag = run.tags.get(WORKER_TAG)
        if tag and worker_alive(tag) is False:
            host, pid, _ = tag.rsplit(":", 2)
            instance.report_run_failed(
                run, message=f"the process running it (pid {pid} on {host}) died"
            )
            failed.append(run.run_id)
    return failed


@contextmanager
def run_scratch_folder(context: dg.AssetExecutionContext) -> Iterator[Path]:
    """A folder of this run's own under the platform's scratch directory, removed after
    the block. The run is first recorded as this process's, and dead runs are failed and
    their folders removed."""
    worker = this_worker()
    if context.run.tags.get(WORKER_TAG) != worker:
        context.instance.add_run_tags(context.run.run_id, {WORKER_TAG: worker})
    fail_dead_runs(context.instance)

    def running(run_id: str) -> bool:
        run = context.instance.get_run_by_id(run_id)
        return run is not None and not run.is_finished

    with scratch_folder(get_platform_settings().scratch_path, context.run.run_id, running) as f:
        yield f
