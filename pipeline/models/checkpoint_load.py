"""Reading a checkpoint's tensors without running code from it: ``torch.load(weights_only=True)``,
on a torch whose weights-only unpickler is not known to be unsafe.

torch < 2.6 runs code from a crafted file even with ``weights_only=True`` (CVE-2025-32434), and
torch < 2.10 can corrupt memory on one (GHSA-63cw-57p8-fm3p, CVE-2026-24747). On those, a
checkpoint is refused with one line saying what to install; ``pyproject.toml``'s ``[torch]``
extra asks for the same floor.
"""

from __future__ import annotations

import re
from pathlib import Path

SAFE_TORCH = (2, 10)  # the first release with both fixes


def torch_version(text: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def require_safe_torch() -> None:
    import torch

    if torch_version(torch.__version__) < SAFE_TORCH:
        raise ValueError(f"torch {torch.__version__} cannot read checkpoints safely (weights-only loading runs code or corrupts "
                         f"memory on crafted files before {'.'.join(map(str, SAFE_TORCH))}: CVE-2025-32434, CVE-2026-24747): "
                         f"pip install 'torch>={'.'.join(map(str, SAFE_TORCH))}'")


def load_weights_only(path: str | Path):
    """``torch.load(path, weights_only=True)`` on the CPU, after ``require_safe_torch``."""
    import torch

    require_safe_torch()
    return torch.load(path, map_location="cpu", weights_only=True)
