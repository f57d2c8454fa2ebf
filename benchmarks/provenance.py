"""Where a result came from: commit, package versions, machine, command, times.

Every results file the project writes carries `provenance(...)` under the key
"provenance", so that a number in the docs can be traced to the code and the machine
that produced it:

    started = provenance.now()
    ...  # the run
    results["provenance"] = provenance.provenance(started)
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys

from benchmarks import cpu_layout

PACKAGES = ("jax", "jaxlib", "optax", "flax", "gymnax", "orbax-checkpoint", "brax", "numpy")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


IMPORTED = now()
"""When this module was first imported: near the start of a command that writes results."""


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state() -> dict:
    """`{"commit": sha or None, "dirty": bool or None}` of the checkout holding this file.

    Dirty means tracked files differ from the commit (untracked files are ignored)."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


AT_IMPORT = git_state()
"""The checkout's state when this module was first imported, near the start of the command:
the code the run imported. A commit made while a long run goes on is not the run's."""


def run_state() -> dict:
    """`git_state()` at import; where HEAD or its cleanliness changed since, the state at the
    end too, as `commit_at_end` and `dirty_at_end`."""
    state = dict(AT_IMPORT)
    end = git_state()
    if end != AT_IMPORT:
        state.update(commit_at_end=end["commit"], dirty_at_end=end["dirty"])
    return state


def versions() -> dict:
    """Python's version and those of the packages that decide the numbers (None: absent)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """JAX's backend, the kind and count of its devices (all processes'), the CPU layout
    (`benchmarks.cpu_layout`), the host's CPU and core count."""
    import jax

    devices = jax.devices()
    backend = jax.default_backend()
    kind = cpu_model() if backend == "cpu" else devices[0].device_kind
    return {
        "backend": backend,
        "device_kind": kind,
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "cpu_layout": cpu_layout.in_effect(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "hostname": platform.node(),
    }


def command(argv: list[str] | None = None) -> str:
    """The command line that started this process, as a shell would take it back."""
    argv = list(sys.argv if argv is None else argv)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if argv and spec is not None and spec.name:  # started as `python -m module`
        module = spec.name.removesuffix(".__main__")
        argv = ["python", "-m", module, *argv[1:]]
    elif argv:
        argv = ["python", *argv]
    return shlex.join(argv)


def provenance(started: str | None = None, argv: list[str] | None = None) -> dict:
    """Everything above, with the UTC start `started` (from `now()`; default `IMPORTED`)
    and the end now."""
    started = started or IMPORTED
    return {
        **run_state(),
        "versions": versions(),
        **machine(),
        "command": command(argv),
        "started_utc": started,
        "ended_utc": now(),
    }
