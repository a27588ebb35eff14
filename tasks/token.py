"""Step 1: an IAM token, fetched once and shared.

The token is a cached Prefect result, so a second flow run (in this process or another) within the token's
life makes no IAM call. The cache key is a keyed hash (HMAC-SHA256, keyed from the result key) of the
credential *scope* (endpoint, domain, user, project) *and the password*: a run with another password, a
mistyped or rotated one, never gets the cached token but logs in, and IAM's refusal fails get-token with the
place the credentials came from (block or ``IMSFLOW_*``). The password itself is never in the key, and the key
holds no unkeyed hash of it. The result is encrypted at rest, and the task takes no secret as input: the
password is read from the settings inside the task, so it never becomes a parameter, the task run's name or a
log line. Concurrent runs wait on one lock, so N concurrent tasks make one IAM call (single flight).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.results import ResultStore, aget_default_result_storage
from prefect.settings import PREFECT_HOME
from pydantic import BaseModel, SecretStr

from imsflow.client import CloudClient
from imsflow.errors import AuthenticationError, ConfigError, InvalidCredentialsError
from imsflow.models import IamToken
from imsflow.settings import ImsflowSettings
from tasks import runtime
from tasks.locking import FlockLockManager
from tasks.retry import transient_retries
from tasks.secure import EncryptedPickleSerializer, mac_key

#: Tokens live 24 h; the cache forgets them an hour earlier so that no run starts with a dying token.
TOKEN_CACHE_LIFETIME = timedelta(hours=23)
#: A token closer than this to its expiry is replaced rather than used.
REFRESH_MARGIN_SECONDS = 30 * 60


class CredentialScope(BaseModel):
    """Who the token is for. Holds no secret: it shows in the task run's name, and with the password makes
    the cache key (:func:`token_cache_key`)."""

    iam_url: str
    domain: str
    username: str
    project: str

    @classmethod
    def from_settings(cls, settings: ImsflowSettings) -> CredentialScope:
        if not settings.domain or not settings.username or settings.password is None:
            raise ConfigError(
                "password authentication needs IMSFLOW_DOMAIN, IMSFLOW_USERNAME and IMSFLOW_PASSWORD",
                hint="set them in the environment or .env, or use AK/SK instead",
            )
        return cls(
            iam_url=settings.endpoint("iam"),
            domain=settings.domain,
            username=settings.username,
            project=settings.project_id or settings.region,
        )

    @property
    def label(self) -> str:
        return f"{self.username}@{self.domain}/{self.project}"


def token_cache_key(scope: CredentialScope, password: SecretStr) -> str:
    """The cached token's storage key: a prefix no other task shares, and an HMAC of scope and password.

    Keyed (``secure.mac_key``, derived from the result key), because the key is a file name in the result
    storage and shows in task run states: a plain hash of the password would let anyone who can read them
    test password guesses offline. Without the MAC key the digest says nothing about the password.
    """
    message = json.dumps(
        {"scope": scope.model_dump(mode="json"), "password": password.get_secret_value()}, sort_keys=True
    )
    digest = hmac.new(mac_key(), message.encode(), hashlib.sha256).hexdigest()[:32]
    return f"imsflow-token-{digest}"


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
            return None  # nothing to cache: _login refuses with a ConfigError
        return token_cache_key(inputs["scope"], password)


# SERIALIZABLE: concurrent get-token runs queue on the key's lock; the first fetches, the rest read its
# cached result. Prefect's FileSystemLockManager breaks under exactly that contention (see tasks/locking.py).
TOKEN_CACHE = TokenCredentialsKey().configure(
    isolation_level="SERIALIZABLE",
    lock_manager=FlockLockManager(lambda: Path(PREFECT_HOME.value()) / "locks"),
)


def _refused(error: AuthenticationError, scope: CredentialScope) -> AuthenticationError:
    """IAM's 401 to a login, saying whose credentials, from where, and what to fix (never the secret).

    IAM answers a wrong password with IAM.0062, an unknown user, domain or project with IAM.0001 (the bare
    ``AuthenticationError``): at a password login both mean the credentials are wrong. A more specific
    refusal (a locked account) keeps its class and hint.
    """
    source = runtime.settings_source()
    wrong_credentials = type(error) in (AuthenticationError, InvalidCredentialsError)
    cls = InvalidCredentialsError if wrong_credentials else type(error)
    remedy = source.remedy if wrong_credentials else error.hint.rstrip(".")
    reason = error.message.strip().rstrip(".") or "refused"
    return cls(
        status=error.status,
        code=error.code,
        message=f"{reason}: IAM refused the login of {scope.label} with {source.label}; {remedy}",
        url=error.url,
        request_id=error.request_id,
        retry_after=error.retry_after,
        hint=remedy[0].upper() + remedy[1:] + ".",
    )


async def _login(scope: CredentialScope) -> IamToken:
    settings = runtime.settings()
    if settings.password is None:
        raise ConfigError("IMSFLOW_PASSWORD is not set")
    settings.check_transport()  # the password goes in this request's body: never over remote plain http
    project = settings.project_id
    try:
        async with CloudClient.from_settings(
            settings, token=None, transport=runtime.current().transport
        ) as client:
            return await client.iam.create_token(
                domain=scope.domain,
                username=scope.username,
                password=settings.password,
                project_id=project,
                project_name=None if project else scope.project,
            )
    except AuthenticationError as error:
        raise _refused(error, scope) from error


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
    token = await _login(scope)
    runtime.report("get-token", f"token for {scope.label}, valid until {token.expires_at:%Y-%m-%d %H:%M} UTC")
    return token


async def fresh_token(scope: CredentialScope) -> IamToken:
    """The cached token, or a new one when the cached one is about to expire."""
    token = await get_token(scope)
    if token.expires_within(REFRESH_MARGIN_SECONDS):
        token = await get_token.with_options(refresh_cache=True)(scope)
    return token


async def flow_token() -> IamToken | None:
    """The token every flow hands its tasks: :func:`fresh_token` for the runtime's settings with password
    authentication; ``None`` with AK/SK, which signs each request instead."""
    settings = runtime.settings()
    if settings.auth_mode != "password":
        return None
    return await fresh_token(CredentialScope.from_settings(settings))


async def replace_token(scope: CredentialScope) -> IamToken:
    """A new token in place of the cached one, after the cloud answered 401 to it.

    Called from inside other tasks, so it is not a task itself: a nested get-token would run inside the
    caller's transaction and wait on the very cache lock its parent holds. It writes the cache record
    directly instead, under the same key, so the next run picks up the new token.
    """
    token = await _login(scope)
    store = ResultStore(
        result_storage=await aget_default_result_storage(), serializer=EncryptedPickleSerializer()
    )
    expiration = datetime.now(UTC) + TOKEN_CACHE_LIFETIME
    password = runtime.settings().password
    if password is None:  # _login refused already; this keeps the type checker (and -O) honest
        raise ConfigError("IMSFLOW_PASSWORD is not set")
    key = token_cache_key(scope, password)  # the key get-token computes (TokenCredentialsKey)
    await store.awrite(token, key=key, expiration=expiration)  # type: ignore[arg-type]
    return token
