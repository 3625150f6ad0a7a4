"""The worker processes shared by the survey and the export: how many, how they start, and a
pool that runs the per-case work and can be stopped at once."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from ..errors import LiverTumorError
from ..processes import mp_context

_PRELOAD = [__name__, f"{__package__}.survey", f"{__package__}.slice_files"]
"""Modules a forkserver imports once, before it forks the workers: this one (their
initializer) and those of the per-case functions they run."""


def _ping(_=None) -> int:
    return os.getpid()


def _worker_init() -> None:
    """Workers ignore Ctrl-C (SIGINT goes to the whole process group): the main process
    handles it and stops them, instead of each finishing the cases already queued to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Workers:
    """A process pool shared by the survey and the export (or in-process for one worker)."""

    def __init__(self, n: int):
        self.n = n
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the processes now (before any progress bar starts a thread)."""
        if self.n > 1 and self._pool is None:
            ctx = mp_context(_PRELOAD)
            self._pool = ProcessPoolExecutor(self.n, mp_context=ctx, initializer=_worker_init)
            try:
                list(self._pool.map(_ping, range(self.n)))
            except BrokenProcessPool as err:
                raise LiverTumorError(
                    f"the worker processes could not start ({ctx.get_start_method()}): a "
                    "script that imports TensorFlow, PyTorch or JAX must call the export under "
                    "`if __name__ == \"__main__\":` (the workers import the script again), or "
                    "pass workers=1") from err

    def run(self, fn, jobs: list):
        """Yield ``fn(job)`` for every job, in order of completion."""
        if self.n <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield fn(job)
            return
        self.start()
        futures = [self._pool.submit(fn, job) for job in jobs]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        except BrokenProcessPool as err:
            raise LiverTumorError(
                "a worker process died (out of memory?); run the same command again with "
                "fewer workers: the cases already exported are kept") from err

    def close(self, cancel: bool) -> None:
        """Shut the pool down; ``cancel`` (on an error or Ctrl-C): stop the workers now. A case
        they were writing has no completion record and is redone by the next run."""
        if self._pool is None:
            return
        if cancel:
            processes = getattr(self._pool, "_processes", None) or {}  # pid -> Process
            for proc in list(processes.values()):
                proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=cancel)
        self._pool = None
