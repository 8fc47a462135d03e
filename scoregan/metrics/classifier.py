"""A small per-data-set conv classifier whose penultimate layer is the feature map of the image metrics.

Images x (N, C, H, W) in [-1, 1] (or flat (N, C·H·W)) go through a few 3×3 conv layers (no batch
statistics: no BatchNorm, so φ(x) of a sample does not depend on the rest of its batch), a linear
layer and a ReLU to the features φ(x) ∈ R^F (F = 128), then a linear head to the class logits
(dropout between φ and the head, active only in training). It plays the role Inception plays for
FID on ImageNet-like data: trained once per data set (Adam, cross-entropy, random ±1-pixel shifts)
and cached on disk, keyed by the data set's name, its ``content_key()`` and the training settings.

The data set is duck-typed: ``name``, ``image_shape`` (C, H, W), ``images`` (N, C, H, W), ``labels``
(N,) or None, ``heldout_images`` / ``heldout_labels`` (m, ...) or None, ``content_key()``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from scoregan._checks import check_int
from scoregan.checkpoint import save_atomic

__all__ = [
    "CACHE_ENV",
    "CLASSIFIER_VERSION",
    "FEATURE_DIM",
    "FeatureClassifier",
    "as_images",
    "classifier_cache_dir",
    "default_steps",
    "get_classifier",
    "image_shape_of",
    "train_classifier",
]

#: Environment variable naming the root of scoregan's caches (classifiers go to its ``classifiers/``).
CACHE_ENV = "SCOREGAN_CACHE"
#: Width F of the feature layer.
FEATURE_DIM = 128
#: Bumped whenever the architecture or the training recipe changes (part of the cache key).
CLASSIFIER_VERSION = 1
#: Share of a data set without a held-out split kept out of training to measure the accuracy.
HOLDOUT_FRACTION = 0.1
#: Training batch size and Adam learning rate of :func:`train_classifier`.
BATCH_SIZE, LR = 128, 2e-3


def image_shape_of(dataset: Any) -> tuple[int, int, int]:
    """The data set's ``image_shape`` as (C, H, W) (an (H, W) shape means one channel)."""
    shape = getattr(dataset, "image_shape", None)
    if shape is None:
        raise ValueError(f"data set {getattr(dataset, 'name', '?')!r} has no image_shape: it is not an image data set")
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (C, H, W), got {shape}")
    return shape  # type: ignore[return-value]


def as_images(name: str, x: Any, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """``x`` (N, C·H·W) or (N, C, H, W), tensor or array, as an (N, C, H, W) floating tensor (same device;
    float64 stays float64, other dtypes become float32)."""
    t = torch.as_tensor(x).detach()
    if t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.uint8, torch.int64, torch.int32)):
        raise ValueError(f"{name} must hold real numbers, got dtype {t.dtype}")
    c, h, w = image_shape
    if t.ndim == 2 and t.shape[1] == c * h * w:
        t = t.reshape(-1, c, h, w)
    elif t.ndim != 4 or tuple(t.shape[1:]) != (c, h, w):
        raise ValueError(f"{name} must have shape (N, {c * h * w}) or (N, {c}, {h}, {w}), got {tuple(t.shape)}")
    return t if t.dtype == torch.float64 else t.to(torch.float32)


class FeatureClassifier(nn.Module):
    """Conv net → features φ(x) (N, F) → logits (N, n_classes).

    H, W <= 16: conv3×3(C→32), conv3×3(32→64), 2×2 max-pool; larger images: three blocks
    conv3×3 + 2×2 max-pool with 32/64/128 channels. Then flatten, Linear → F, ReLU (the features).
    """

    def __init__(self, image_shape: tuple[int, int, int], n_classes: int, *, feature_dim: int = FEATURE_DIM,
                 dropout: float = 0.3):
        super().__init__()
        c, h, w = (int(s) for s in image_shape)
        check_int("n_classes", n_classes, minimum=2)
        self.image_shape = (c, h, w)
        self.n_classes = n_classes
        self.feature_dim = feature_dim
        if max(h, w) <= 16:
            layers: list[nn.Module] = [nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(),
                                       nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            out_c, out_h, out_w = 64, h // 2, w // 2
        else:
            layers, in_c = [], c
            for ch in (32, 64, 128):
                layers += [nn.Conv2d(in_c, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
                in_c = ch
            out_c, out_h, out_w = 128, h // 8, w // 8
        if out_h < 1 or out_w < 1:
            raise ValueError(f"image_shape {image_shape} is too small for the classifier")
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(out_c * out_h * out_w, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, n_classes)
        #: True when :func:`get_classifier` loaded this model from its cache file (no training).
        self.loaded_from_cache = False
        #: Held-out accuracy measured after training (NaN until known).
        self.accuracy = math.nan

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x): x (N, C·H·W) or (N, C, H, W) → (N, F), ReLU outputs; per-sample deterministic."""
        x = as_images("x", x, self.image_shape).to(self.fc.weight.device, self.fc.weight.dtype)
        return F.relu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_classes) = head(dropout(φ(x)))."""
        return self.head(self.dropout(self.features(x)))


def default_steps(image_shape: tuple[int, int, int]) -> int:
    """Training steps (batch 128) for an image size: 400 up to 16×16 (digits), 3000 above (MNIST, CIFAR)."""
    return 400 if max(image_shape[1:]) <= 16 else 3000


def _shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Each image of x (B, C, H, W) shifted by an independent random (dy, dx) ∈ {−1, 0, 1}² (edge pixels repeated)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    off = torch.randint(0, 3, (2, b), generator=g)
    rows = (off[0, :, None] + torch.arange(h))[:, None, :, None]  # (B, 1, H, 1)
    cols = (off[1, :, None] + torch.arange(w))[:, None, None, :]  # (B, 1, 1, W)
    return padded[torch.arange(b)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]


@torch.no_grad()
def _accuracy(model: FeatureClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Share of images (N, C, H, W) whose arg-max logit is the label (N,); eval mode."""
    was = model.training
    model.eval()
    correct = sum(int((model(images[i:i + batch_size]).argmax(1) == labels[i:i + batch_size]).sum())
                  for i in range(0, images.shape[0], batch_size))
    model.train(was)
    return correct / images.shape[0]


def _labels(name: str, y: Any, n: int) -> torch.Tensor:
    t = torch.as_tensor(y).detach().to("cpu")
    if t.shape != (n,) or t.is_floating_point() or t.is_complex():
        raise ValueError(f"{name} must be an integer tensor of shape ({n},), got dtype {t.dtype} shape {tuple(t.shape)}")
    if n and int(t.min()) < 0:
        raise ValueError(f"{name} must be non-negative class indices, got min {int(t.min())}")
    return t.to(torch.int64)


def train_classifier(images: Any, labels: Any, *, test_images: Any, test_labels: Any, steps: int | None = None,
                     batch_size: int = BATCH_SIZE, lr: float = LR, seed: int = 0,
                     progress: bool = True) -> tuple[FeatureClassifier, float]:
    """Train a :class:`FeatureClassifier` on images (N, C, H, W) in [-1, 1] with labels (N,).

    Adam (lr decayed by a cosine to lr/20), cross-entropy, mini-batches of ``batch_size`` drawn with
    replacement, each image shifted by a random ±1 pixel. Deterministic given ``seed`` (the init runs
    on a forked global RNG, the batches on a private generator; the caller's RNG state is untouched).
    Returns the model in eval mode (on the CPU) and its accuracy on test_images (m, C, H, W), test_labels (m,).
    """
    x = torch.as_tensor(images).detach().to("cpu", torch.float32)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}")
    shape = tuple(x.shape[1:])
    x_test = as_images("test_images", test_images, shape).to("cpu")  # type: ignore[arg-type]
    y = _labels("labels", labels, x.shape[0])
    y_test = _labels("test_labels", test_labels, x_test.shape[0])
    if x.shape[0] < 2 or x_test.shape[0] < 1:
        raise ValueError(f"need at least 2 training and 1 test image, got {x.shape[0]} and {x_test.shape[0]}")
    steps = default_steps(shape) if steps is None else check_int("steps", steps, minimum=1)  # type: ignore[arg-type]
    check_int("batch_size", batch_size, minimum=1)
    check_int("seed", seed, minimum=0)
    n_classes = max(2, int(torch.cat([y, y_test]).max()) + 1)
    with torch.random.fork_rng(devices=[]):  # init and dropout draw on the CPU generator
        torch.manual_seed(seed)
        model = FeatureClassifier(shape, n_classes)  # type: ignore[arg-type]
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(i / steps, 1.0))))
        g = torch.Generator().manual_seed(seed + 1)
        model.train()
        bar = tqdm(range(steps), desc=f"feature classifier ({shape[0]}×{shape[1]}×{shape[2]})", leave=False,
                   disable=not progress, mininterval=0.5)
        for i in bar:
            idx = torch.randint(0, x.shape[0], (batch_size,), generator=g)
            loss = F.cross_entropy(model(_shift(x[idx], g)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if i % 50 == 0 and not bar.disable:
                bar.set_postfix(loss=f"{loss.item():.3g}", refresh=False)
        bar.close()
    model.eval()
    acc = _accuracy(model, x_test, y_test)
    model.accuracy = acc
    return model, acc


def classifier_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$SCOREGAN_CACHE/classifiers``, else ``~/.cache/scoregan/classifiers``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "scoregan") / "classifiers"


def _split(dataset: Any, shape: tuple[int, int, int], seed: int) -> tuple[torch.Tensor, ...]:
    """(train images, train labels, test images, test labels): the held-out split, or the last 10 % of a
    seeded permutation of the training set."""
    x = as_images("dataset.images", dataset.images, shape).to("cpu")
    y = _labels("dataset.labels", dataset.labels, x.shape[0])
    hx, hy = getattr(dataset, "heldout_images", None), getattr(dataset, "heldout_labels", None)
    if hx is not None and hy is not None and len(hx) > 0:
        hx = as_images("dataset.heldout_images", hx, shape).to("cpu")
        return x, y, hx, _labels("dataset.heldout_labels", hy, hx.shape[0])
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(HOLDOUT_FRACTION * x.shape[0]))
    tr, te = perm[:-n_test], perm[-n_test:]
    return x[tr], y[tr], x[te], y[te]


def _cache_path(dataset: Any, settings: dict[str, Any], root: Path) -> Path:
    desc = {"name": str(dataset.name), "content": str(dataset.content_key()), **settings}
    key = hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:20]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(dataset.name)) or "dataset"
    return root / f"{safe}-{key}.pt"


def _load(path: Path, shape: tuple[int, int, int]) -> tuple[FeatureClassifier, float] | None:
    """The cached model and accuracy, or None (with a warning) for an unreadable file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = FeatureClassifier(shape, int(state["n_classes"]))
        model.load_state_dict(state["weights"])
        acc = float(state["accuracy"])
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, TypeError, ValueError, OSError) as exc:
        warnings.warn(f"classifier cache {str(path)!r} is unreadable ({type(exc).__name__}); retraining and "
                      "overwriting it", RuntimeWarning, stacklevel=3)
        return None
    model.eval()
    model.accuracy = acc
    model.loaded_from_cache = True
    return model, acc


def get_classifier(dataset: Any, *, cache_dir: str | Path | None = None, steps: int | None = None, seed: int = 0,
                   progress: bool = True) -> tuple[FeatureClassifier, float]:
    """The data set's feature classifier and its held-out accuracy, trained once and cached.

    Cache file: ``<cache dir>/<name>-<hash>.pt`` (:func:`classifier_cache_dir`), the hash of the name,
    ``dataset.content_key()`` and the settings (steps, seed, ...), written atomically with the weights,
    the accuracy and the settings; a cached file is loaded without training (``model.loaded_from_cache``).
    The accuracy is measured on ``heldout_images`` when the data set has them, else on the last 10 % of
    a seeded permutation of ``images`` (then kept out of training); it is printed once after training.
    """
    shape = image_shape_of(dataset)
    if getattr(dataset, "labels", None) is None:
        raise ValueError(f"data set {getattr(dataset, 'name', '?')!r} has no labels: the image metrics need a labelled "
                         "data set (digits, mnist, fashion_mnist, cifar10) or Inception weights (eval.inception)")
    steps = default_steps(shape) if steps is None else check_int("steps", steps, minimum=1)
    check_int("seed", seed, minimum=0)
    has_heldout = getattr(dataset, "heldout_images", None) is not None and \
        getattr(dataset, "heldout_labels", None) is not None
    settings = {"steps": steps, "seed": seed, "batch_size": BATCH_SIZE, "lr": LR, "shape": list(shape),
                "holdout": "heldout" if has_heldout else f"last{HOLDOUT_FRACTION}", "version": CLASSIFIER_VERSION}
    path = _cache_path(dataset, settings, classifier_cache_dir(cache_dir))
    if path.is_file():
        loaded = _load(path, shape)
        if loaded is not None:
            return loaded
    x, y, x_test, y_test = _split(dataset, shape, seed)
    model, acc = train_classifier(x, y, test_images=x_test, test_labels=y_test, steps=steps,
                                  batch_size=settings["batch_size"], lr=settings["lr"], seed=seed, progress=progress)
    print(f"feature classifier for {dataset.name!r}: held-out accuracy {100 * acc:.2f} % "
          f"({x_test.shape[0]} images, {steps} steps); cached at {path}")
    save_atomic({"weights": model.state_dict(), "n_classes": model.n_classes, "accuracy": acc,
                 "settings": settings, "name": str(dataset.name)}, path)
    return model, acc
