"""Devices: the adapter a call runs on, the lazily created default, and the adapter list."""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

from . import _native
from ._native import Device

__all__ = ["Device", "default_device", "devices"]

_lock = threading.Lock()
_default: Optional[Device] = None


def default_device() -> Device:
    """The device every function uses when ``device=None``.

    Created on first use, once per process and thread-safely, as ``Device()``: on the adapter
    ``WGPU_BACKEND`` and ``WGPU_ADAPTER_NAME`` name, else on wgpu's choice.

    Raises
    ------
    NoAdapterError
        If there is no adapter; the message names the software adapters to install.
    """
    global _default
    with _lock:
        if _default is None:
            _default = Device()
        return _default


def devices(backend: Optional[str] = None) -> List[Dict[str, Any]]:
    """The adapters a :class:`Device` can be made on, without making one.

    Parameters
    ----------
    backend : str, optional
        ``"vulkan"``, ``"gl"``, ``"metal"``, ``"dx12"`` or ``"webgpu"`` (or a comma-separated
        list); every backend if None.

    Returns
    -------
    list of dict
        One dict per adapter with keys ``name``, ``backend``, ``device_type``, ``driver`` and
        ``features`` (the optional features the kernels use: ``subgroup``, ``shader_f16``,
        ``timestamp_query``).
    """
    return _native.adapters(backend)


def resolve(device: Optional[Device]) -> Device:
    """``device``, or the default device if None."""
    if device is None:
        return default_device()
    if not isinstance(device, Device):
        raise TypeError(f"device must be a logdomain.Device or None, not {type(device).__name__}")
    return device
