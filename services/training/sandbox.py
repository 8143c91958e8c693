"""Launcher of a job's process: `python -m services.training.sandbox LIMITS -- ARGV…`.

It applies the resource limits (`resource.setrlimit`), asks the kernel to kill it should the
platform that started it die (PR_SET_PDEATHSIG, so no job outlives its supervisor unseen), then
replaces itself with the job's program. Doing this in a launcher rather than a `preexec_fn`
keeps the platform's own process free of fork-time hooks.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1

LIMITS = {
    "memory_bytes": resource.RLIMIT_AS,
    "cpu_seconds": resource.RLIMIT_CPU,
    "open_files": resource.RLIMIT_NOFILE,
    "file_bytes": resource.RLIMIT_FSIZE,
    "processes": resource.RLIMIT_NPROC,
}


def apply(limits: dict[str, int]) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name, value in limits.items():
        if value is None or name not in LIMITS:
            continue
        kind = LIMITS[name]
        _, hard = resource.getrlimit(kind)
        ceiling = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(kind, (ceiling, ceiling))


def die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass
    if os.getppid() == 1:  # the supervisor is already gone
        os._exit(137)


def main(argv: list[str]) -> None:
    limits, rest = json.loads(argv[0]), argv[argv.index("--") + 1 :]
    die_with_parent()
    apply(limits)
    os.execvp(rest[0], rest)


if __name__ == "__main__":
    main(sys.argv[1:])
