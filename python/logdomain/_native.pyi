"""Type stubs of the compiled module ``logdomain._native`` (python/src/lib.rs)."""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

class NoAdapterError(RuntimeError):
    """No wgpu adapter was found; the message names the software adapters to install."""

class DeviceError(RuntimeError):
    """The device failed or refused the work (a limit, an unsupported feature, out of memory,
    a lost device, or an internal error)."""

class Device:
    """A wgpu device with logdomain's pipelines.

    Parameters
    ----------
    backend : str, optional
        ``"vulkan"``, ``"gl"``, ``"metal"``, ``"dx12"`` or ``"webgpu"``; ``WGPU_BACKEND`` if
        None, else every backend.
    adapter : str, optional
        A case-insensitive substring of the adapter's name (e.g. ``"llvmpipe"``);
        ``WGPU_ADAPTER_NAME`` if None.

    Raises
    ------
    NoAdapterError
        If no adapter matches.
    ValueError
        For an unknown backend name.
    """

    def __init__(self, backend: Optional[str] = None, adapter: Optional[str] = None) -> None: ...
    @property
    def name(self) -> str:
        """The adapter's name."""
    @property
    def backend(self) -> str:
        """``vulkan``, ``gl``, ``metal``, ``dx12`` or ``webgpu``."""
    @property
    def device_type(self) -> str:
        """``discretegpu``, ``integratedgpu``, ``cpu``, ``virtualgpu`` or ``other``."""
    @property
    def driver(self) -> str:
        """The driver's name and version."""
    @property
    def features(self) -> List[str]:
        """The optional features the kernels use that the device has."""

def adapters(backend: Optional[str] = None) -> List[Dict[str, Any]]: ...
def reduce(
    device: Device, func: str, x: npt.NDArray[Any], axes: Optional[List[int]], keepdims: bool
) -> npt.NDArray[np.float32]: ...
def reduce_masked(
    device: Device,
    func: str,
    x: npt.NDArray[np.float32],
    where_: npt.NDArray[np.bool_],
    axes: Optional[List[int]],
    keepdims: bool,
) -> npt.NDArray[np.float32]: ...
def reduce_weighted(
    device: Device,
    x: npt.NDArray[np.float32],
    b: npt.NDArray[np.float32],
    axes: Optional[List[int]],
    keepdims: bool,
) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
def categorical(
    device: Device,
    loss: str,
    x: npt.NDArray[Any],
    targets: npt.NDArray[np.int64],
    weight: Optional[npt.NDArray[np.float32]],
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    with_grad: bool,
) -> Any: ...
def cross_entropy_probs(
    device: Device,
    x: npt.NDArray[np.float32],
    targets: npt.NDArray[np.float32],
    weight: Optional[npt.NDArray[np.float32]],
    label_smoothing: float,
    reduction: str,
) -> npt.NDArray[np.float32]: ...
def linear_cross_entropy(
    device: Device,
    x: npt.NDArray[Any],
    weight: npt.NDArray[Any],
    targets: npt.NDArray[np.int64],
    bias: Optional[npt.NDArray[np.float32]],
    class_weight: Optional[npt.NDArray[np.float32]],
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    z_loss: float,
    softcap: Optional[float],
    grad_filter: bool,
    with_grad: bool,
) -> Any: ...
def logit_cross_entropy(
    device: Device,
    x: npt.NDArray[Any],
    targets: npt.NDArray[np.int64],
    weight: Optional[npt.NDArray[np.float32]],
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    z_loss: float,
    softcap: Optional[float],
    with_grad: bool,
) -> Any: ...
def bce_with_logits(
    device: Device,
    x: npt.NDArray[np.float32],
    target: npt.NDArray[np.float32],
    pos_weight: Optional[npt.NDArray[np.float32]],
    reduction: str,
) -> npt.NDArray[np.float32]: ...
def gaussian_nll(
    device: Device,
    input: npt.NDArray[np.float32],
    target: npt.NDArray[np.float32],
    var: npt.NDArray[np.float32],
    full: bool,
    eps: float,
    reduction: str,
) -> npt.NDArray[np.float32]: ...
def poisson_nll(
    device: Device,
    input: npt.NDArray[np.float32],
    target: npt.NDArray[np.float32],
    log_input: bool,
    full: bool,
    eps: float,
    reduction: str,
) -> npt.NDArray[np.float32]: ...
def gmm_score(
    device: Device,
    x: npt.NDArray[np.float32],
    kind: str,
    weights: npt.NDArray[np.float32],
    means: npt.NDArray[np.float32],
    cov: npt.NDArray[np.float32],
    log_resp: bool,
) -> npt.NDArray[np.float32]: ...
def gmm_predict(
    device: Device,
    x: npt.NDArray[np.float32],
    kind: str,
    weights: npt.NDArray[np.float32],
    means: npt.NDArray[np.float32],
    cov: npt.NDArray[np.float32],
) -> npt.NDArray[np.int64]: ...
def gmm_stats(
    device: Device,
    x: npt.NDArray[np.float32],
    kind: str,
    weights: npt.NDArray[np.float32],
    means: npt.NDArray[np.float32],
    cov: npt.NDArray[np.float32],
    scatter: bool,
) -> Tuple[
    float,
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
]: ...
def reduce_partial(
    device: Device,
    x: npt.NDArray[np.float32],
    axes: Optional[List[int]],
    keepdims: bool,
) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.uint32]]: ...
def lse_combine(
    m1: npt.NDArray[np.float32],
    s1: npt.NDArray[np.float32],
    flags1: npt.NDArray[np.uint32],
    m2: npt.NDArray[np.float32],
    s2: npt.NDArray[np.float32],
    flags2: npt.NDArray[np.uint32],
) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.uint32]]: ...
def lse_result(
    m: npt.NDArray[np.float32], s: npt.NDArray[np.float32], flags: npt.NDArray[np.uint32]
) -> npt.NDArray[np.float32]: ...
def lse_entries(
    func: str,
    x: npt.NDArray[np.float32],
    m: npt.NDArray[np.float32],
    s: npt.NDArray[np.float32],
    flags: npt.NDArray[np.uint32],
) -> npt.NDArray[np.float32]: ...
