"""A description of the machine a benchmark ran on, stored with its figures."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from kdlab.core.version import __version__


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def describe_machine(device: torch.device) -> dict[str, Any]:
    """CPU model, cores (all and usable by this process), torch threads and versions; the GPU when ``device`` is
    CUDA."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kdlab": __version__,
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        machine["gpu"] = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return machine


def machine_line(machine: dict[str, Any]) -> str:
    """One line for the terminal and the results file."""
    line = (
        f"{machine['cpu']} · {machine['cores']} cores ({machine['usable_cores']} usable) · "
        f"torch {machine['torch']} with {machine['torch_threads']} threads"
    )
    gpu = machine.get("gpu")
    if gpu:
        line += f" · {gpu['name']} ({gpu['memory_gib']} GiB, CUDA {gpu['cuda']})"
    return line
