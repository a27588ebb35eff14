"""How a task authenticates: a password login (the token's scope, its cache key, the record a 401 replaces),
the flow's token refreshed once on a 401, or AK/SK from the settings.

The cached *step* that fetches the token is ``tasks/token.py`` (get-token); what it and every task's client
share lives here, so that a client can replace a dead token without importing a step.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, SecretStr

import runtime
from imsflow.client import CloudClient
from imsflow.errors import AuthenticationError, ConfigError, InvalidCredentialsError
from imsflow.models import IamToken
from imsflow.settings import ImsflowSettings
from runtime.records import TOKENS
from runtime.secure import mac_key

#: Tokens live 24 h; the cache forgets them an hour earlier so that no run starts with a dying token.
TOKEN_CACHE_LIFETIME = timedelta(hours=23)


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


def _token_digest(scope: CredentialScope, password: SecretStr) -> str:
    message = json.dumps(
        {"scope": scope.model_dump(mode="json"), "password": password.get_secret_value()}, sort_keys=True
    )
    return hmac.new(mac_key(), message.encode(), hashlib.sha256).hexdigest()[:32]


def token_cache_key(scope: CredentialScope, password: SecretStr) -> str:
    """The cached token's storage key (:data:`runtime.records.TOKENS`): a prefix no other task shares, and
    an HMAC of scope and password.

    Keyed (``secure.mac_key``, derived from the result key), because the key is a file name in the result
    storage and shows in task run states: a plain hash of the password would let anyone who can read them
    test password guesses offline. Without the MAC key the digest says nothing about the password.
    """
    return TOKENS.key(_token_digest(scope, password))


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


async def login(scope: CredentialScope) -> IamToken:
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


async def replace_token(scope: CredentialScope) -> IamToken:
    """A new token in place of the cached one, after the cloud answered 401 to it.

    Called from inside other tasks, so it is not a task itself: a nested get-token would run inside the
    caller's transaction and wait on the very cache lock its parent holds. It writes the cache record
    (:data:`runtime.records.TOKENS`) instead, under the key get-token computes (:func:`token_cache_key`), so
    the next run picks up the new token.
    """
    token = await login(scope)
    password = runtime.settings().password
    if password is None:  # login refused already; this keeps the type checker (and -O) honest
        raise ConfigError("IMSFLOW_PASSWORD is not set")
    expiration = datetime.now(UTC) + TOKEN_CACHE_LIFETIME
    await TOKENS.put(_token_digest(scope, password), token, expiration=expiration)
    return token


# A flow hands the same token to every task. When one task's 401 replaced it, the later tasks would start
# with the dead token again and each pay a 401 and a login of its own; this maps a replaced token (by
# fingerprint, never the value) to its successor, so the process logs in once per revocation.
_successors: dict[str, IamToken] = {}
_successors_lock = threading.Lock()


def _fingerprint(token: IamToken) -> str:
    return hashlib.sha256(token.value.get_secret_value().encode()).hexdigest()


def latest_token(token: IamToken) -> IamToken:
    """``token``, or the token that replaced it (after a 401) in this process."""
    with _successors_lock:
        seen = {_fingerprint(token)}
        while (successor := _successors.get(_fingerprint(token))) is not None:
            token = successor
            if _fingerprint(token) in seen:  # never loop, whatever was recorded
                break
            seen.add(_fingerprint(token))
    return token


# AK/SK runs without IMSFLOW_PROJECT_ID find the project by region name; every task builds its own client,
# so the answer is kept per (IAM endpoint, AK, region) for the life of the process.
_project_ids: dict[tuple[str, str, str], str] = {}


@runtime.on_reset
def _forget() -> None:
    with _successors_lock:
        _successors.clear()
    _project_ids.clear()


def _project_cache_key(settings: ImsflowSettings) -> tuple[str, str, str]:
    return (settings.endpoint("iam"), settings.access_key or "", settings.region)


class TaskClient(CloudClient):
    """A ``CloudClient`` that remembers the project ID it looked up, for the next task's client."""

    async def resolve_project_id(self) -> str:
        project_id = await super().resolve_project_id()
        _project_ids[_project_cache_key(self.settings)] = project_id
        return project_id


def client_for(token: IamToken | None) -> CloudClient:
    """A client for one task. With a token, a 401 fetches one new token (and updates the cache).

    With AK/SK (no token) the project ID comes from the settings or, when unset, from IAM by region name
    (``GET /v3/projects?name=``) on the client's first project-scoped call.
    """
    settings = runtime.settings()
    # Every task's client is built here, whatever started the run (CLI, deployment, Python): a plain-http
    # endpoint on a remote host is refused unless IMSFLOW_ALLOW_INSECURE says otherwise.
    settings.check_transport()
    refresh = None
    if token is not None:
        token = latest_token(token)
        scope = CredentialScope.from_settings(settings)
        held = token

        async def refresh_token() -> IamToken:
            nonlocal held
            newer = latest_token(held)
            if newer is held:  # nobody replaced it yet: log in, and tell the other tasks
                newer = await replace_token(scope)
                with _successors_lock:
                    _successors[_fingerprint(held)] = newer
            held = newer
            return newer

        refresh = refresh_token
    client = TaskClient.from_settings(
        settings, token=token, refresh=refresh, transport=runtime.current().transport
    )
    if token is not None:
        client.project_id = token.project_id
    elif client.project_id is None:
        client.project_id = _project_ids.get(_project_cache_key(settings))
    return client
