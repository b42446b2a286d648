"""Device selection for torch code: CPU by default, CUDA only when asked and available."""

from __future__ import annotations

import torch

from spicenet.errors import ConfigError


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """'cpu' (default), 'cuda' / 'cuda:N' (ConfigError when CUDA is unavailable), or 'auto' (CUDA if available)."""
    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device: unknown device {device!r} (use cpu, cuda, cuda:N or auto)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} requested but CUDA is not available (torch {torch.__version__}, "
                              f"CUDA build: {torch.version.cuda}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type != "cpu":
        raise ConfigError(f"device: {name!r} is not supported (use cpu, cuda, cuda:N or auto)")
    return dev
