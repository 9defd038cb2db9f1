"""The torch backend: numpy and tensor calls agree, batches over max_batch run in chunks, CUDA only where there is one."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pipeline.backends import Backend  # noqa: E402
from pipeline.backends.torch import TorchBackend  # noqa: E402


def conv(seed: int = 0):
    """A seeded 1x1 convolution, 3 -> 4 channels."""
    torch.manual_seed(seed)
    return torch.nn.Conv2d(3, 4, 1)


def batch(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, 8, 12), dtype=np.float32)


def test_numpy_and_tensor_calls_agree():
    be = TorchBackend(conv(), (8, 12), ["output0"])
    assert isinstance(be, Backend)
    x = batch(3)
    host = be.infer(x)
    dev = be.infer_tensor(torch.from_numpy(x))
    assert set(host) == set(dev) == {"output0"}
    assert isinstance(host["output0"], np.ndarray) and isinstance(dev["output0"], torch.Tensor)
    assert host["output0"].shape == (3, 4, 8, 12)
    np.testing.assert_allclose(host["output0"], dev["output0"].numpy(), atol=1e-6, rtol=0)
    assert np.abs(host["output0"]).max() > 0  # the convolution did something


@pytest.mark.parametrize("call", ["infer", "infer_tensor"])
def test_max_batch_chunks_give_the_result_of_one_call(call):
    module = conv()
    calls: list[int] = []
    module.register_forward_hook(lambda _m, args, _out: calls.append(len(args[0])))
    x = batch(5)
    arg = x if call == "infer" else torch.from_numpy(x)
    whole = getattr(TorchBackend(module, (8, 12), ["output0"]), call)(arg)["output0"]
    assert calls == [5]
    chunked = getattr(TorchBackend(module, (8, 12), ["output0"], max_batch=2), call)(arg)["output0"]
    assert calls == [5, 2, 2, 1]
    assert tuple(chunked.shape) == (5, 4, 8, 12)
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(whole), atol=1e-6, rtol=0)


def test_cpu_backend_describes_itself():
    be = TorchBackend(conv(), (8, 12), ["output0"])
    assert be.tensor_device == "cpu" and be.captures_own_graphs is False and be.name == "torch"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch sees a CUDA GPU: cuda is accepted here")
def test_cuda_is_refused_without_a_gpu():
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        TorchBackend(conv(), (8, 12), ["output0"], device="cuda")
