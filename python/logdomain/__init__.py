"""logdomain: log-domain mathematics as WGSL compute kernels on any GPU.

SciPy's ``logsumexp``, ``softmax`` and ``log_softmax``, PyTorch's likelihood losses and
scikit-learn's ``GaussianMixture`` (``logdomain.GaussianMixture``, which needs scikit-learn), on
NumPy arrays, run by wgpu on Vulkan, Metal, DX12 or GL adapters, including the software
adapters llvmpipe and lavapipe. Every function takes ``device=`` (a :class:`Device`; the
default device if None) and releases the GIL while the GPU works. ``lse_state``,
``lse_merge`` and ``lse_finish`` expose the kernels' mergeable log-sum-exp states;
``logdomain.dask`` runs the functions on Dask arrays.
"""

from typing import TYPE_CHECKING

from ._device import Device, default_device, devices
from ._losses import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    cross_entropy_with_grad,
    gaussian_nll_loss,
    linear_cross_entropy,
    linear_cross_entropy_with_grad,
    nll_loss,
    poisson_nll_loss,
)
from ._native import DeviceError, NoAdapterError
from ._special import log_softmax, logsumexp, softmax
from ._states import STATE_DTYPE, lse_finish, lse_merge, lse_state

if TYPE_CHECKING:
    from .mixture import GaussianMixture

__version__ = "0.1.0"


def __getattr__(name: str):
    # GaussianMixture is a scikit-learn estimator: scikit-learn is imported on first use of
    # the class, so that the functions need NumPy only.
    if name == "GaussianMixture":
        from .mixture import GaussianMixture

        return GaussianMixture
    raise AttributeError(f"module 'logdomain' has no attribute {name!r}")


__all__ = [
    "STATE_DTYPE",
    "Device",
    "DeviceError",
    "GaussianMixture",
    "NoAdapterError",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "cross_entropy_with_grad",
    "default_device",
    "devices",
    "gaussian_nll_loss",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "log_softmax",
    "logsumexp",
    "lse_finish",
    "lse_merge",
    "lse_state",
    "nll_loss",
    "poisson_nll_loss",
    "softmax",
]
