"""What settings depend on outside their file: the offline folder, this machine's GPUs, and
whether per-trial requests fit this machine or a cluster's nodes."""

from __future__ import annotations

import os
from pathlib import Path

from tuning.settings.checks import field_label
from tuning.settings.schema import SearchConfig

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
SHARED_ENV = "KLUE_TUNE_SHARED"


def gpu_names() -> list[str]:
    """The CUDA GPUs this process sees (empty without any): what a trial here would train on."""
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def shared_dir() -> Path:
    """The folder with offline data and models: ``$KLUE_TUNE_SHARED`` or ``<repo>/../shared``."""
    return Path(os.environ.get(SHARED_ENV) or REPO_ROOT.parent / "shared").resolve()


def resource_problems(search: SearchConfig, cpus: int, gpus: int) -> list[str]:
    """Per-trial requests larger than the machine Ray starts on (Ray would wait for them forever).

    Args:
        search: the requests, ``cpus_per_trial`` and ``gpus_per_trial``.
        cpus: CPU cores of the machine; gpus: its CUDA GPUs.
    """
    problems: list[str] = []
    # `auto` is resolved from this machine (tuning.hardware.resolve_resources): it always fits.
    if isinstance(search.cpus_per_trial, (int, float)) and search.cpus_per_trial > cpus:
        problems.append(
            f"{field_label('search.cpus_per_trial')} asks for {search.cpus_per_trial:g} CPUs per trial, "
            f"but this machine has {cpus}; pass --cpus-per-trial {cpus} or less."
        )
    if isinstance(search.gpus_per_trial, (int, float)) and search.gpus_per_trial > gpus:
        fix = f"--gpus-per-trial {gpus} or less" if gpus else "--gpus-per-trial 0 to train on the CPU"
        problems.append(
            f"{field_label('search.gpus_per_trial')} asks for {search.gpus_per_trial:g} GPU(s) per trial, "
            f"but this machine has {gpus or 'none'} (CUDA GPUs torch sees); pass {fix}."
        )
    return problems


def node_problems(search: SearchConfig, nodes: list[dict[str, float]], where: str) -> list[str]:
    """A per-trial request no node of a cluster can meet (Ray would wait for it forever).

    Args:
        search: the requests, ``cpus_per_trial`` and ``gpus_per_trial``.
        nodes: the resources (``CPU``, ``GPU``) of each alive node and of each node type an
            autoscaler may start.
        where: the cluster, as the message names it.
    """
    # `auto` is resolved from the cluster's largest node: it asks for nothing that node lacks.
    cpus, gpus = (
        v if isinstance(v, (int, float)) else 0.0 for v in (search.cpus_per_trial, search.gpus_per_trial)
    )
    if any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        return []
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    return [
        f"a trial asks for {cpus:g} CPUs and {gpus:g} GPUs (--cpus-per-trial, --gpus-per-trial), but no "
        f"node or node type of the cluster at {where} has that (most CPUs on one: {most_cpus:g}; most "
        f"GPUs: {most_gpus:g}); lower the request, or add a node type that fits to the cluster's config."
    ]
