"""Disk used by an experiment folder: what the search, its checkpoints and the export occupy."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_PREFIX = "checkpoint_"
"""Ray Tune's per-trial checkpoint folders (``checkpoint_000001``)."""


@dataclass
class DiskUsage:
    """Bytes (file sizes, as ``du --apparent-size`` counts them) under an experiment folder."""

    total: int
    checkpoints: int
    """In the trials' kept checkpoints."""
    best_model: int
    """In the exported ``best_model/``."""
    tensorboard: int
    """In ``tensorboard/``."""
    files: int
    """Number of files counted."""


def measure(root: str | Path, skip: tuple[str, ...] = ()) -> DiskUsage:
    """Walk ``root`` without following links.

    Args:
        root: the experiment folder.
        skip: file names directly in ``root`` not to count (the report and its figures, so that
            rebuilding the report does not change the figure it states).
    """
    root = Path(root)
    total = checkpoints = best = tensorboard = files = 0
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        rel = Path(folder).relative_to(root).parts
        for name in names:
            if not rel and name in skip:
                continue
            path = Path(folder, name)
            if path.is_symlink():
                continue
            size = path.stat().st_size
            total += size
            files += 1
            if any(p.startswith(CHECKPOINT_PREFIX) for p in rel):
                checkpoints += size
            elif rel and rel[0] == "best_model":
                best += size
            elif rel and rel[0] == "tensorboard":
                tensorboard += size
    return DiskUsage(total, checkpoints, best, tensorboard, files)


def human(size: int) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 KiB``, ``12.3 MiB``, ``4.00 GiB``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}"
    return f"{size} B"  # unreachable
