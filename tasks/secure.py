"""Encryption at rest for results that hold secrets (the IAM token).

Prefect's default serializer writes base64(cloudpickle): anyone who can read ``PREFECT_HOME/storage`` could
read the token. This serializer encrypts with Fernet (``cryptography`` comes with Prefect). The key comes from
``IMSFLOW_RESULT_KEY``, else from a key file generated once with mode 0600. Only the serializer's *type*
is written into the result's metadata, never the key.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import cloudpickle
from cryptography.fernet import Fernet
from prefect.serializers import Serializer

from tasks import runtime


def key_file() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "imsflow" / "result.key"


@lru_cache(maxsize=4)
def _fernet_for(key: bytes) -> Fernet:
    return Fernet(key)


def _load_or_create_key(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Fernet.generate_key()
    # O_EXCL: if two processes race to create the key, exactly one wins and the other reads its key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def fernet() -> Fernet:
    configured = runtime.settings().result_key
    if configured is not None:
        return _fernet_for(configured.get_secret_value().encode())
    return _fernet_for(_load_or_create_key(key_file()))


class EncryptedPickleSerializer(Serializer):  # not Serializer[Any]: a parametrized class breaks its dispatch
    """cloudpickle, then Fernet. A reader with another key gets a cache miss, not the secret."""

    type: Literal["imsflow-encrypted-pickle"] = "imsflow-encrypted-pickle"

    def dumps(self, obj: Any) -> bytes:
        return fernet().encrypt(cloudpickle.dumps(obj))

    def loads(self, blob: bytes) -> Any:
        return cloudpickle.loads(fernet().decrypt(blob))
