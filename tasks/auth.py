"""How a task authenticates: the flow's token (refreshed once on a 401) or AK/SK from the settings."""

from __future__ import annotations

import hashlib
import threading

from imsflow.client import CloudClient
from imsflow.models import IamToken
from imsflow.settings import ImsflowSettings
from tasks import runtime
from tasks.token import CredentialScope, replace_token

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
