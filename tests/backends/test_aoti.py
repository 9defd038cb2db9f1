"""AOTInductor backend: what it refuses (building and running .pt2 files is in tests/build)."""

import pytest

pytest.importorskip("torch")

from pipeline.backends.aoti import AotiBackend  # noqa: E402
from pipeline.types import EngineMeta, Fit  # noqa: E402

META = EngineMeta("yolo", "detect", ("a",), Fit((64, 64)), ("output0",), batch=1)


def test_a_file_that_is_not_a_package_is_refused(tmp_path):
    bad = tmp_path / "x.pt2"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="not a loadable AOTInductor package"):
        AotiBackend(bad, META)


def test_cuda_without_a_gpu_is_refused(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ValueError, match="sees no CUDA GPU: use --device cpu"):
        AotiBackend(tmp_path / "x.pt2", META, device="cuda")
