"""Choosing the torch device the policy runs on."""

from __future__ import annotations

import torch

from robometa.errors import RobometaError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda[:N]`` must exist."""
    if isinstance(name, torch.device):
        name = str(name)
    name = str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        index = 0
        if name.startswith("cuda:"):
            try:
                index = int(name.split(":", 1)[1])
            except ValueError:
                raise RobometaError(f"bad device {name!r}; valid: {', '.join(DEVICE_CHOICES)}") from None
        if not torch.cuda.is_available():
            raise RobometaError(
                f"device {name!r} is not available (no CUDA GPU found); valid here: auto, cpu"
            )
        if index >= torch.cuda.device_count():
            raise RobometaError(
                f"device {name!r} is not available; this machine has cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
        return torch.device(name)
    raise RobometaError(f"unknown device {name!r}; valid: {', '.join(DEVICE_CHOICES)}")
