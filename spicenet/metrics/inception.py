"""Standard Inception-v3 FID, only when pytorch-fid or torch-fidelity *and* their weights are already on disk.

Never downloads. The result is reported under the key ``fid_inception`` and is never mixed with the project's
own ``fid_spicenet_<family>``. Grey images are replicated to 3 channels; both libraries resize to 299 px.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from spicenet.metrics.fid import fid_from_features

PYTORCH_FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"


def _hub_file(name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def inception_available() -> str | None:
    """'pytorch-fid' or 'torch-fidelity' when the library and its weights are present locally, else None."""
    if importlib.util.find_spec("pytorch_fid") is not None and _hub_file(PYTORCH_FID_WEIGHTS).is_file():
        return "pytorch-fid"
    if importlib.util.find_spec("torch_fidelity") is not None and _hub_file(TORCH_FIDELITY_WEIGHTS).is_file():
        return "torch-fidelity"
    return None


@torch.no_grad()
def _inception_features(x01: torch.Tensor, backend: str, batch_size: int = 50) -> np.ndarray:
    """x01: (N, 1, H, W) in [0, 1] -> (N, 2048) pool features."""
    x3 = x01.repeat(1, 3, 1, 1)
    if backend == "pytorch-fid":
        from pytorch_fid.inception import InceptionV3

        model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True, normalize_input=True).eval()
        outs = [model(x3[i : i + batch_size])[0].flatten(1) for i in range(0, x3.shape[0], batch_size)]
    else:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).eval()
        xb = (x3 * 255).round().to(torch.uint8)
        outs = [model(xb[i : i + batch_size])[0].flatten(1) for i in range(0, xb.shape[0], batch_size)]
    return torch.cat(outs).double().cpu().numpy()


def inception_fid(real01: torch.Tensor, fake01: torch.Tensor) -> float | None:
    """Inception FID between two (N, 1, H, W) [0, 1] image sets, or None when no local Inception weights exist."""
    backend = inception_available()
    if backend is None:
        return None
    return fid_from_features(_inception_features(real01, backend), _inception_features(fake01, backend))
