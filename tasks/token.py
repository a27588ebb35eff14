"""Step 1: an IAM token, fetched once and shared.

The token is a cached Prefect result, so a second flow run (in this process or another) within the token's
life makes no IAM call. The cache key is a keyed hash (HMAC-SHA256, keyed from the result key) of the
credential *scope* (endpoint, domain, user, project) *and the password*: a run with another password, a
mistyped or rotated one, never gets the cached token but logs in, and IAM's refusal fails get-token with the
place the credentials came from (block or ``IMSFLOW_*``). The password itself is never in the key, and the key
holds no unkeyed hash of it. The result is encrypted at rest, and the task takes no secret as input: the
password is read from the settings inside the task, so it never becomes a parameter, the task run's name or a
log line. Concurrent runs wait on one lock, so N concurrent tasks make one IAM call (single flight).

The login itself, the scope and the cache key are ``runtime/auth.py``'s, shared with every task's client.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from prefect import get_run_logger, task
from prefect.cache_policies import CachePolicy
from prefect.client.schemas.objects import State
from prefect.context import TaskRunContext
from prefect.settings import PREFECT_HOME

import runtime
from imsflow.models import IamToken
from runtime.auth import TOKEN_CACHE_LIFETIME, CredentialScope, login, token_cache_key
from runtime.locking import FlockLockManager
from runtime.retry import transient_retries
from runtime.secure import EncryptedPickleSerializer

#: A token closer than this to its expiry is replaced rather than used.
REFRESH_MARGIN_SECONDS = 30 * 60


@dataclass
class TokenCredentialsKey(CachePolicy):
    """Cache key from the credential scope and the password the login would use (the runtime's settings)."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        password = runtime.settings().password
        if password is None:
            return None  # nothing to cache: login refuses with a ConfigError
        return token_cache_key(inputs["scope"], password)


# SERIALIZABLE: concurrent get-token runs queue on the key's lock; the first fetches, the rest read its
# cached result. Prefect's FileSystemLockManager breaks under exactly that contention
# (see runtime/locking.py).
TOKEN_CACHE = TokenCredentialsKey().configure(
    isolation_level="SERIALIZABLE",
    lock_manager=FlockLockManager(lambda: Path(PREFECT_HOME.value()) / "locks"),
)


@task(
    name="get-token",
    task_run_name="get-token[{scope.label}]",
    cache_policy=TOKEN_CACHE,
    cache_expiration=TOKEN_CACHE_LIFETIME,
    result_serializer=EncryptedPickleSerializer(),
    **transient_retries(),
)
async def get_token(scope: CredentialScope) -> IamToken:
    """Ask IAM for a project-scoped token (password method)."""
    token = await login(scope)
    runtime.report("get-token", f"token for {scope.label}, valid until {token.expires_at:%Y-%m-%d %H:%M} UTC")
    return token


async def fresh_token(scope: CredentialScope) -> IamToken:
    """The cached token, or a new one when the cached one is about to expire."""
    # Prefect's typing says a State; an async task's call is a coroutine that resolves to it.
    state = await cast("Awaitable[State[IamToken]]", get_token(scope, return_state=True))
    token: IamToken = await state.aresult()  # raises what failed get-token
    if token.expires_within(REFRESH_MARGIN_SECONDS):
        return await get_token.with_options(refresh_cache=True)(scope)
    if state.name == "Cached":
        # get-token's body did not run, so it told nobody: the run's log still says which token it uses.
        get_run_logger().info(
            "cached token for %s, valid until %s UTC", scope.label, f"{token.expires_at:%Y-%m-%d %H:%M}"
        )
    return token


async def flow_token() -> IamToken | None:
    """The token every flow hands its tasks: :func:`fresh_token` for the runtime's settings with password
    authentication; ``None`` with AK/SK, which signs each request instead.
    """
    settings = runtime.settings()
    if settings.auth_mode != "password":
        return None
    return await fresh_token(CredentialScope.from_settings(settings))


__all__ = [
    "REFRESH_MARGIN_SECONDS",
    "TOKEN_CACHE",
    "TOKEN_CACHE_LIFETIME",
    "CredentialScope",
    "flow_token",
    "fresh_token",
    "get_token",
    "token_cache_key",
]
