"""Worker processes for the per-case work of the export and of the demo generator: how many,
and how they start."""

from __future__ import annotations

import multiprocessing
import os
import sys


def default_workers() -> int:
    """The CPUs this process may use (its affinity on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def mp_context(preload: list[str]):
    """Start method of the worker processes.

    ``fork`` on Linux (fast, and no ``if __name__ == "__main__"`` guard needed in a user's
    script), unless a runtime that starts native thread pools is loaded (TensorFlow, PyTorch,
    JAX: a forked copy of their locked state can deadlock); then ``forkserver`` with the
    ``preload`` modules (those of the functions the workers run) imported once before it
    forks, else ``spawn`` (other systems). The workers run numpy, scipy, nibabel and Pillow
    code, which is fork-safe; what they produce does not depend on the start method.
    """
    methods = multiprocessing.get_all_start_methods()
    threaded = any(m in sys.modules for m in ("tensorflow", "torch", "jax"))
    if sys.platform == "linux" and "fork" in methods and not threaded:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(preload))
        return ctx
    return multiprocessing.get_context("spawn")
