"""Transfer learning for a crop classifier: a new head trained on labelled crops over a frozen base.

``finetune(folder, arch, weights)``: the crops are read from ``folder/<class>/*`` (the class
names are the folder names), fitted with the architecture's preset, and passed once through the
base network (the torchvision classifier without its last layer, frozen); a new last layer is
fitted to those features (full-batch L-BFGS on class-balanced cross-entropy, features
standardised, the standardisation folded into the layer). The result is a plain state_dict
plus the class names, which ``--classify-crops torchvision:<arch> --classify-weights FILE``
loads. Small and CPU-feasible: one forward per crop, then a linear problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.models import classify
from pipeline.preprocess.host import prepare
from pipeline.sources import read_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class FineTuned:
    model: object  # the torchvision classifier with its new head
    names: list[str]
    train_accuracy: float


def read_folder(folder: str | Path) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """(BGR images, labels, class names) from ``folder/<class>/<image>``; a ValueError naming what is missing."""
    folder = Path(folder)
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if len(names) < 2:
        raise ValueError(f"'{folder}': give a folder with one sub-folder of images per class (at least two classes)")
    images, labels = [], []
    for k, name in enumerate(names):
        for path in sorted((folder / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                img = read_image(path)
                if img is None:
                    raise ValueError(f"'{path}' is not a readable image")
                images.append(img)
                labels.append(k)
    counts = np.bincount(labels, minlength=len(names))
    if counts.min() == 0:
        raise ValueError(f"'{folder}': class '{names[int(np.argmin(counts))]}' has no images")
    return images, np.asarray(labels), names


def features(model, images: list[np.ndarray], arch: str, batch: int = 32) -> np.ndarray:
    """(N, F) outputs of ``model`` (its head removed) on the images fitted with ``arch``'s preset."""
    import torch

    meta = classify.describe(arch)
    mean, std = torch.tensor(meta.mean).view(1, 3, 1, 1), torch.tensor(meta.std).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.stack([prepare(im, meta.fit)[0] for im in images[i : i + batch]]))
            out.append(model((x - mean) / std).numpy())
    return np.concatenate(out)


def _head(model):
    """(parent module, attribute, the last Linear layer) of a torchvision classifier."""
    import torch

    last = None
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.Linear):
                last = (parent, name, child)
    return last


def finetune(folder: str | Path, arch: str = "resnet18", weights: str | Path | None = None, steps: int = 200, seed: int = 0,
             l2: float = 0.1) -> FineTuned:
    """A new head for ``arch`` (base: ``weights``, a state_dict file, "DEFAULT", or None for a
    seeded random base) trained on the crops in ``folder``."""
    import torch

    images, labels, names = read_folder(folder)
    model = classify.build(arch, weights, seed=seed)
    parent, attr, old = _head(model)
    setattr(parent, attr, torch.nn.Identity())
    feats = torch.from_numpy(features(model, images, arch))
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    z = (feats - mu) / sd
    torch.manual_seed(seed)
    head = torch.nn.Linear(z.shape[1], len(names))
    y = torch.from_numpy(labels)
    weight = torch.from_numpy(len(labels) / (len(names) * np.bincount(labels, minlength=len(names)))).float()
    opt = torch.optim.LBFGS(head.parameters(), lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def loss_fn():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(z), y, weight=weight) + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(loss_fn)
    with torch.no_grad():
        train_acc = float((head(z).argmax(1) == y).float().mean())
        folded = torch.nn.Linear(z.shape[1], len(names))
        folded.weight.copy_(head.weight / sd)
        folded.bias.copy_(head.bias - (head.weight * (mu / sd)).sum(1))
    if getattr(old, "bias", None) is None:
        raise ValueError(f"{arch}: its last layer has no bias; not supported for fine-tuning")
    setattr(parent, attr, folded)
    return FineTuned(model.eval(), names, train_acc)


def save(result: FineTuned, path: str | Path) -> Path:
    """``{"model": state_dict, "names": [...]}`` (loads with ``torch.load(weights_only=True)``)."""
    import torch

    path = Path(path)
    torch.save({"model": result.model.state_dict(), "names": list(result.names)}, path)
    return path
