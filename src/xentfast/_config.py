"""Backend and build information."""
from __future__ import annotations

import sys
import sysconfig

import numpy as np

from . import _core
from ._version import __version__


def backend() -> str:
    """Name of the kernels in use: ``"avx512"``, ``"avx2"``, ``"neon"`` or ``"scalar"``.

    Chosen once at import (the best this CPU and OS support) unless the
    environment variable ``XENTFAST_BACKEND`` names one.

    Examples
    --------
    >>> import xentfast
    >>> xentfast.backend() in ("avx512", "avx2", "neon", "scalar")
    True
    """
    return _core.backend()


def config() -> dict:
    """The facts :func:`show_config` prints, as a dict."""
    return {
        "version": __version__,
        "backend": _core.backend(),
        "supported_backends": _core.supported_backends(),
        "cpu_features": _core.cpu_features(),
        "compiler": sysconfig.get_config_var("CC") or "unknown",
        "openmp": _core.OPENMP,
        "default_threads": _core.max_threads(),
        "min_work_per_thread": _core.min_work_per_thread(),
        "forked_child": _core.forked_child(),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def show_config(file=None) -> None:
    """Print version, backend, CPU features, compiler, OpenMP and threads.

    The thread lines give the default thread count, the work each thread
    must get before a call uses it (smaller calls run on the calling thread
    and open no parallel region), and whether this process is the child of a
    ``fork()``, where every call runs on one thread.

    Examples
    --------
    >>> import xentfast
    >>> xentfast.show_config()  # doctest: +ELLIPSIS
    xentfast ...
    """
    c = config()
    lines = [
        f"xentfast {c['version']}",
        f"  backend:            {c['backend']} (supported here: {', '.join(c['supported_backends'])})",
        f"  cpu features:       {', '.join(c['cpu_features']) or 'none detected'}",
        f"  compiler:           {c['compiler']}",
        f"  openmp:             {'on' if c['openmp'] else 'OFF (serial build)'}",
        f"  default threads:    {c['default_threads']}",
        "  per-thread minimum: " + ", ".join(
            f"{kind} {n}" for kind, n in c["min_work_per_thread"].items())
        + " elements (smaller calls: no parallel region)",
        "  forked child:       " + ("yes: every call runs on one thread" if c["forked_child"]
                                    else "no"),
        f"  numpy / python:     {c['numpy']} / {c['python']}",
    ]
    print("\n".join(lines), file=file or sys.stdout)
