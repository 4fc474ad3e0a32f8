"""What the machine has, in bytes, before any work starts: the memory budget every estimate is checked against.

The budget is the least of: MemAvailable from /proc/meminfo; a cgroup limit less what the cgroup already uses
(v2 `memory.max`, v1 `memory.limit_in_bytes`); and `MEDATTN_MEMORY_LIMIT` (bytes, or with a K/M/G/T suffix: the
total this process may hold, like a container's limit) less what this process already holds. The variable is
how a user states a limit the kernel does not know, and how tests make a machine small.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from medattn.errors import ConfigError, MemoryBudgetError

ENV = "MEDATTN_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_CGROUP_LIMITS = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # v2
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),  # v1
)


@dataclass(frozen=True)
class Budget:
    available: int  # bytes this process may still allocate
    source: str  # what bounds it, for messages


def parse_bytes(text: str) -> int:
    """'3G', '512M', '2.5GiB', '1000000' -> bytes; anything else is an error naming MEDATTN_MEMORY_LIMIT."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", text.upper())
    if not match:
        raise ConfigError(f"{ENV}={text!r}: expected bytes, or a number with K, M, G or T (e.g. 4G)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def human(n: float) -> str:
    """Bytes for a person: 1.23 GiB, 45.6 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}" if n < 10 else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def rss() -> int:
    """Resident bytes of this process now."""
    return _status_kib("VmRSS")


def peak_rss() -> int:
    """The most resident bytes this process has held (VmHWM)."""
    return _status_kib("VmHWM")


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cgroup_available() -> int | None:
    for limit_file, usage_file in _CGROUP_LIMITS:
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # "max" or a huge v1 number: no limit
            return max(int(limit) - usage, 0)
    return None


def budget() -> Budget:
    """The bytes this process may still allocate, and what bounds them."""
    candidates = []
    if (value := os.environ.get(ENV, "").strip()) != "":
        limit = parse_bytes(value)
        candidates.append((max(limit - rss(), 0), f"{ENV}={value} less {human(rss())} held"))
    if (cgroup := _cgroup_available()) is not None:
        candidates.append((cgroup, "the cgroup's memory limit"))
    if (free := _meminfo_available()) is not None:
        candidates.append((free, "MemAvailable in /proc/meminfo"))
    if not candidates:
        return Budget(available=1 << 62, source="no limit known")
    available, source = min(candidates)
    return Budget(available=available, source=source)


def refuse(what: str, *, need: int, have: Budget, fix: str) -> MemoryBudgetError:
    """The error for work that would not fit: what, the estimate, what is available and from where, what to do."""
    return MemoryBudgetError(
        f"{what} needs about {human(need)} more than this process holds, but {human(have.available)} is available "
        f"({have.source}); {fix}"
    )
