"""Encryption at rest for results that hold secrets (the IAM token).

Prefect's default serializer writes base64(cloudpickle): anyone who can read ``PREFECT_HOME/storage`` could
read the token. This serializer encrypts with Fernet (``cryptography`` comes with Prefect). The key comes from
``IMSFLOW_RESULT_KEY``, else from a key file generated once with mode 0600. Only the serializer's *type*
is written into the result's metadata, never the key.

The same key, through a derived subkey, keys the HMAC that binds a cached token to the password it was
fetched with (:func:`mac_key`, used by ``tasks/token.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import cloudpickle
from cryptography.fernet import Fernet
from prefect.serializers import Serializer

import runtime


def key_file() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "imsflow" / "result.key"


@lru_cache(maxsize=4)
def _fernet_for(key: bytes) -> Fernet:
    return Fernet(key)


runtime.on_reset(_fernet_for.cache_clear)


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


def _result_key() -> bytes:
    configured = runtime.settings().result_key
    if configured is not None:
        return configured.get_secret_value().encode()
    return _load_or_create_key(key_file())


def fernet() -> Fernet:
    return _fernet_for(_result_key())


#: Domain separation: the MAC key is derived from the result key, never the Fernet key itself.
_MAC_KEY_LABEL = b"imsflow/token-cache-key/hmac-sha256/v1"


def mac_key() -> bytes:
    """A 32-byte key for HMACs of secrets that end up in cache keys, derived from the result key.

    Why the result key: it is a local secret that lives apart from the cache entries (``IMSFLOW_RESULT_KEY``
    or a 0600 file under ``~/.config``, never in ``PREFECT_HOME/storage``), so a reader of the result storage
    sees only digests it cannot test password guesses against. Whoever holds it can already decrypt the cached
    tokens, so the MAC gives nobody a new capability. Hosts that share one cache must share this key anyway
    (or they could not read each other's tokens), so they compute the same cache keys; a host with another
    key, or a rotated key, gets different keys, i.e. a clean cache miss instead of an unreadable entry.
    """
    return hmac.new(_result_key(), _MAC_KEY_LABEL, hashlib.sha256).digest()


class EncryptedPickleSerializer(Serializer):  # not Serializer[Any]: a parametrized class breaks its dispatch
    """cloudpickle, then Fernet. A reader with another key gets a cache miss, not the secret."""

    type: Literal["imsflow-encrypted-pickle"] = "imsflow-encrypted-pickle"

    def dumps(self, obj: Any) -> bytes:
        return fernet().encrypt(cloudpickle.dumps(obj))

    def loads(self, blob: bytes) -> Any:
        return cloudpickle.loads(fernet().decrypt(blob))
