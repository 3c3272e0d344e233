"""Whether a dataset's arrays fit the memory this process may use, checked before a single image is decoded.

Decoded, a dataset is one uint8 array of ``images x size x size x 3`` bytes. Asked for more than the machine (or the
container's memory limit) leaves free, decoding would end in the kernel's out-of-memory kill, or swap for an hour, after
the study was created; the check refuses it first and says what it would need.
"""

from __future__ import annotations

import os
from pathlib import Path

from tuner.errors import DataError

__all__ = ["available_bytes", "check_fits"]

_CGROUP = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    """What a container's memory limit leaves: cgroup v2 ``memory.max - memory.current``, or v1's pair."""
    pairs = (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"))
    for limit, usage in pairs:
        cap, used = _read_int(_CGROUP / limit), _read_int(_CGROUP / usage)
        if cap is not None and used is not None and cap < 2**60:  # v1 writes a huge number for no limit
            return max(cap - used, 0)
    return None


def available_bytes() -> int | None:
    """Bytes this process can still allocate without swapping: the machine's available memory, or less under a
    container's limit; ``None`` where neither can be read."""
    found = [b for b in (_meminfo_available(), _cgroup_available()) if b is not None]
    return min(found) if found else None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(images: int, image_size: int, what: str) -> None:
    """Raises when ``images`` decoded at ``image_size`` would not fit the memory available.

    Raises:
        DataError: one line with what the arrays need and what the machine has.
    """
    need = images * image_size * image_size * 3
    have = available_bytes()
    if have is not None and need > have:
        raise DataError(f"{what}: {images:,} images at image_size={image_size} need {_gib(need)} of memory as uint8 "
                        f"arrays, and this machine has {_gib(have)} available; lower image_size= or classes=")
