"""The memory budget: how many bytes an operation may still allocate.

One number for every check in mlu: the smallest of the host's available memory
(``MemAvailable``), the headroom of the process's cgroup (v2 ``memory.max`` minus
``memory.current``, or v1 ``memory.limit_in_bytes`` minus ``memory.usage_in_bytes``, for the
cgroup and each of its ancestors) and the headroom under ``RLIMIT_AS`` (the address-space
limit minus the current virtual size). A container's limit is what the OOM killer enforces,
and an address-space limit makes allocations fail, so the host's free memory alone is not
enough.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["memory_budget_bytes"]

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, ValueError):
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_headroom() -> int | None:
    """Smallest limit - usage over this process's cgroup and its ancestors (v2, then v1)."""
    try:
        lines = _PROC_CGROUP.read_text().splitlines()
    except OSError:
        return None
    best = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # v2 unified hierarchy
            base, limit_name, usage_name = _CGROUP_ROOT, "memory.max", "memory.current"
        elif "memory" in controllers.split(","):  # v1 memory controller
            base = _CGROUP_ROOT / "memory"
            limit_name, usage_name = "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        # The cgroup path as seen from inside a container may not exist under base: then the
        # namespace root is ours (cgroupns), so also look at base itself.
        directory = base / rel.lstrip("/")
        candidates = []
        while True:
            candidates.append(directory)
            if directory == base or base not in directory.parents:
                break
            directory = directory.parent
        if base not in candidates:
            candidates.append(base)
        for d in candidates:
            limit, usage = _read_int(d / limit_name), _read_int(d / usage_name)
            if limit is None or limit >= 1 << 60:  # v1 writes "no limit" as a huge number
                continue
            headroom = max(0, limit - (usage or 0))
            best = headroom if best is None else min(best, headroom)
    return best


def _address_space_headroom() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    size = 0
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    size = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return max(0, soft - size)


def memory_budget_bytes() -> int:
    """Bytes this process can still allocate: min(MemAvailable, cgroup, RLIMIT_AS headroom).

    Returns
    -------
    int
        The budget in bytes (8 GiB if none of the sources can be read).
    """
    values = [
        v
        for v in (_meminfo_available(), _cgroup_headroom(), _address_space_headroom())
        if v is not None
    ]
    return min(values) if values else 8 << 30
