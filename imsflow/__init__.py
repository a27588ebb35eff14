"""imsflow: turn ECS servers into IMS images on Huawei-Cloud-API clouds.

The package root stays import-light (no Prefect, no httpx): import what you need from the submodules,
e.g. ``imsflow.client.CloudClient`` and ``imsflow.settings.ImsflowSettings``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("imsflow")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0.1.0"

__all__ = ["__version__"]
