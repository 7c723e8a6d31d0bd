"""xentfast's threads after fork().

The OpenMP runtime does not survive ``fork()``: the child of a process whose
runtime has a thread pool hangs in its first parallel region.  A handler
registered with ``pthread_atfork`` (in ``_core``, so that every fork counts)
therefore makes every call in a forked child run on the calling thread
(``num_threads`` larger is capped to 1, silently; ``show_config()`` says so).

The one fork this module recognises as harmless is the one a
``multiprocessing`` forkserver makes for each new worker: that server process
only imports modules, so its OpenMP runtime has no thread pool, and its
children keep their threads -- unless xentfast opened a parallel region in the
server itself.  ``spawn`` workers are fresh processes and always keep theirs.
"""
from __future__ import annotations

import os
import sys

from . import _core


def _forkserver_code():
    module = sys.modules.get("multiprocessing.forkserver")
    main = getattr(module, "main", None)
    return getattr(main, "__code__", None)


def _before_fork() -> None:
    # os.fork() runs this hook from C, so the frame below it is os.fork's caller
    caller = sys._getframe(1)
    code = _forkserver_code()
    _core._set_next_fork_clean(code is not None and caller.f_code is code)


def _after_fork_in_parent() -> None:
    _core._set_next_fork_clean(False)


if hasattr(os, "register_at_fork"):  # once per process: a module runs once
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent)
