"""How a task authenticates: the flow's token (refreshed once on a 401) or AK/SK from the settings."""

from __future__ import annotations

from imsflow.client import CloudClient
from imsflow.models import IamToken
from tasks import runtime
from tasks.token import CredentialScope, replace_token


def client_for(token: IamToken | None) -> CloudClient:
    """A client for one task. With a token, a 401 fetches one new token (and updates the cache)."""
    settings = runtime.settings()
    refresh = None
    if token is not None:
        scope = CredentialScope.from_settings(settings)

        async def refresh_token() -> IamToken:
            return await replace_token(scope)

        refresh = refresh_token
    client = CloudClient.from_settings(
        settings, token=token, refresh=refresh, transport=runtime.current().transport
    )
    if token is not None:
        client.project_id = token.project_id
    return client
