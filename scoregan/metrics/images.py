"""Image metrics in the feature space of a per-data-set classifier (and optionally Inception), and image grids.

With φ: images → R^F the penultimate layer of the data set's :class:`FeatureClassifier` (F = 128),
samples X (N, C·H·W or N, C, H, W) and reference images Y (M, ...) give feature sets φ(X) (N, F),
φ(Y) (M, F) in float64, and :func:`image_report` returns

* ``fd``: the Fréchet distance ‖μ_X − μ_Y‖² + tr(Σ_X + Σ_Y − 2(Σ_XΣ_Y)^{1/2}) of their Gaussian fits
  (:func:`scoregan.metrics.frechet_distance`: "FID" with the classifier in place of Inception);
* ``kid``, ``kid_se``: the unbiased MMD² with k(x, y) = (xᵀy/F + 1)³ averaged over ``subsets`` random
  subsets of ``subset_size`` rows of each set (Bińkowski et al. 2018; :func:`scoregan.metrics.kid`),
  and its standard error std/√subsets (std with ddof = 1; NaN for a single subset);
* ``precision``, ``recall``: k-NN manifold precision / recall (Kynkäänniemi et al. 2019;
  :func:`scoregan.metrics.precision_recall`, k = 3);
* ``fid``, ``kid_inception`` with ``inception``: the same two on Inception-v3 pool features, through
  torch-fidelity (or torchmetrics), an optional extra.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from scoregan import plotting
from scoregan._checks import check_int
from scoregan.metrics.classifier import as_images, get_classifier, image_shape_of
from scoregan.metrics.discrepancy import kid as kid_metric
from scoregan.metrics.features import frechet_distance, precision_recall

__all__ = [
    "IMAGE_REPORT_KEYS",
    "INCEPTION_REPORT_KEYS",
    "image_features",
    "image_report",
    "inception_metrics",
    "save_image_grid",
]

#: Keys of every image report.
IMAGE_REPORT_KEYS = ("fd", "kid", "kid_se", "precision", "recall")
#: Keys added when ``inception`` is given.
INCEPTION_REPORT_KEYS = ("fid", "kid_inception")


def _device_of(model: Any) -> tuple[torch.device | None, torch.dtype]:
    if isinstance(model, nn.Module):
        p = next(model.parameters(), None)
        if p is not None:
            return p.device, p.dtype
    return None, torch.float32


def image_features(x: Any, classifier: Any, batch_size: int = 500, *,
                   image_shape: tuple[int, int, int] | None = None) -> torch.Tensor:
    """φ(x): images x (N, C·H·W) or (N, C, H, W) → features (N, F) float64, ``classifier.features`` on
    batches of ``batch_size`` under ``torch.no_grad`` (on the classifier's device). The image shape is
    ``image_shape``, else ``classifier.image_shape``; without either, x goes to the classifier as given."""
    check_int("batch_size", batch_size, minimum=1)
    shape = image_shape if image_shape is not None else getattr(classifier, "image_shape", None)
    t = as_images("x", x, tuple(shape)) if shape is not None else torch.as_tensor(x).detach()
    device, dtype = _device_of(classifier)
    out = []
    with torch.no_grad():
        for i in range(0, t.shape[0], batch_size):
            b = t[i:i + batch_size]
            if device is not None:
                b = b.to(device=device, dtype=dtype)
            out.append(classifier.features(b).to(torch.float64))
    if not out:
        raise ValueError("x holds no images")
    return torch.cat(out)


def _checked(name: str, x: Any, shape: tuple[int, int, int]) -> torch.Tensor:
    t = as_images(name, x, shape)
    if t.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 images, got {t.shape[0]}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return t


def image_report(samples: Any, reference: Any, *, dataset: Any, classifier: Any = None, subsets: int = 10,
                 subset_size: int | None = None, k: int = 3, inception: str | Path | bool | None = None,
                 seed: int = 0) -> dict[str, float]:
    """Image metrics of samples (N, C·H·W or N, C, H, W) against reference images (M, ...) (module doc).

    dataset: the duck-typed image data set (its ``image_shape``; its classifier when ``classifier`` is
    None, from :func:`scoregan.metrics.get_classifier`'s cache, trained on first use). classifier: any
    object with ``features(x) -> (n, F)``. subsets / subset_size (default min(1000, N, M)) / seed: the KID
    subsets; k: the precision / recall neighbourhood (N, M > k). inception: a local path to Inception
    weights, or True for the default ones: adds ``fid`` and ``kid_inception`` (:func:`inception_metrics`).
    Returns ``{"fd", "kid", "kid_se", "precision", "recall"[, "fid", "kid_inception"]}`` as floats.
    """
    shape = image_shape_of(dataset)
    check_int("subsets", subsets, minimum=1)
    check_int("k", k, minimum=1)
    check_int("seed", seed, minimum=0)
    x = _checked("samples", samples, shape)
    y = _checked("reference", reference, shape)
    if classifier is None:
        classifier, _ = get_classifier(dataset)
    fx = image_features(x, classifier, image_shape=shape)
    fy = image_features(y, classifier, image_shape=shape)
    res = kid_metric(fx, fy, subsets=subsets, subset_size=subset_size, generator=seed)
    se = res.std * math.sqrt(subsets / (subsets - 1)) / math.sqrt(subsets) if subsets > 1 else math.nan
    pr = precision_recall(fy, fx, k=k)
    out = {"fd": frechet_distance(fx, fy), "kid": res.mean, "kid_se": se,
           "precision": pr.precision, "recall": pr.recall}
    if inception is not None and inception is not False:
        out.update(inception_metrics(x, y, inception=inception, subsets=subsets, subset_size=subset_size, seed=seed))
    return out


def _uint8_rgb(x: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] → uint8 (N, 3, H, W) in [0, 255] (one channel repeated)."""
    u = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    return u.expand(-1, 3, -1, -1).contiguous() if u.shape[1] == 1 else u


class _Images(Dataset):
    """A uint8 image tensor (N, 3, H, W) as the Dataset torch-fidelity reads."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def inception_metrics(samples: torch.Tensor, reference: torch.Tensor, *, inception: str | Path | bool = True,
                      subsets: int = 10, subset_size: int | None = None, seed: int = 0) -> dict[str, float]:
    """``fid`` and ``kid_inception`` of samples (N, C, H, W) vs reference (M, C, H, W) in [-1, 1] on
    Inception-v3 pool features (2048-D; images as uint8 RGB, resized to 299 by the library).

    Uses torch-fidelity if importable, else torchmetrics; ``inception`` is a local weights file or True
    (the library's default weights, which it may download). ImportError when neither is installed.
    """
    path = None if inception is True else str(inception)
    if path is not None and not Path(path).is_file():
        raise ValueError(f"inception={path!r} is not a file: give a local path to Inception weights, or True")
    size = min(1000 if subset_size is None else subset_size, samples.shape[0], reference.shape[0])
    a, b = _uint8_rgb(samples), _uint8_rgb(reference)
    try:
        import torch_fidelity
    except ImportError:
        torch_fidelity = None
    if torch_fidelity is not None:
        kwargs: dict[str, Any] = {"feature_extractor_weights_path": path} if path is not None else {}
        m = torch_fidelity.calculate_metrics(input1=_Images(a), input2=_Images(b), fid=True, kid=True,
                                             kid_subsets=subsets, kid_subset_size=size, cuda=torch.cuda.is_available(),
                                             cache=False, verbose=False, rng_seed=seed, **kwargs)
        return {"fid": float(m["frechet_inception_distance"]), "kid_inception": float(m["kernel_inception_distance_mean"])}
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError:
        raise ImportError("inception metrics (eval.inception) need torch-fidelity: pip install torch-fidelity "
                          "(or torchmetrics[image])") from None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    fid = FrechetInceptionDistance(**({"feature_extractor_weights_path": path} if path else {})).to(device)
    kid = KernelInceptionDistance(feature=fid.inception, subsets=subsets, subset_size=size).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for metric in (fid, kid):
            for real, imgs in ((False, a), (True, b)):
                for i in range(0, imgs.shape[0], 200):
                    metric.update(imgs[i:i + 200].to(device), real=real)
        return {"fid": float(fid.compute()), "kid_inception": float(kid.compute()[0])}


def _grid_shape(x: Any, image_shape: tuple[int, ...] | None) -> tuple[int, int, int]:
    t = torch.as_tensor(x)
    if t.ndim == 4:
        return tuple(int(s) for s in t.shape[1:])  # type: ignore[return-value]
    if image_shape is not None:
        return (1, *image_shape) if len(image_shape) == 2 else tuple(int(s) for s in image_shape)  # type: ignore
    d = t.shape[-1] if t.ndim == 2 else 0
    for c in (1, 3):
        side = math.isqrt(d // c) if d % c == 0 else 0
        if side > 0 and c * side * side == d:
            return (c, side, side)
    raise ValueError(f"cannot infer the image shape of images with shape {tuple(t.shape)}: pass image_shape=(C, H, W)")


def save_image_grid(images: Any, path: str | Path, *, nrow: int | None = None,
                    image_shape: tuple[int, ...] | None = None) -> Path:
    """Write images (N, C·H·W) or (N, C, H, W) in [-1, 1] (C = 1 or 3; clipped) as a PNG grid.

    ``nrow`` images per row (default ⌈√N⌉), a 1-px gray border around and between them: the PNG is
    (rows·(H+1)+1) × (nrow·(W+1)+1) pixels. Flat images need ``image_shape`` unless they are square
    (d = H² or 3H²). Returns the path (parent folders created).
    """
    shape = _grid_shape(images, image_shape)
    x = as_images("images", images, shape).cpu()  # type: ignore[arg-type]
    if x.shape[0] < 1 or shape[0] not in (1, 3):
        raise ValueError(f"images must hold at least one 1- or 3-channel image, got shape {tuple(x.shape)}")
    return plotting.save_image_grid(x, path, shape, nrow=None if nrow is None else check_int("nrow", nrow, minimum=1))
