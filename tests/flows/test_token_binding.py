"""The cached token is bound to the password it was fetched with ("borrowed tokens").

The token cache key is an HMAC of the credential scope *and the password*. A block (or ``IMSFLOW_*`` settings)
with the right user name but another password must never run on a token cached by an earlier run: it logs in,
and IAM's 401 fails get-token with a message that says where the password came from and what to fix.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun
from prefect.settings import PREFECT_HOME
from pydantic import SecretStr

import runtime
from flows.lifecycle import DeleteImageParams, delete_image
from imsflow.errors import InvalidCredentialsError
from localcloud import LocalCloud
from runtime.auth import replace_token
from runtime.credentials import ImsflowCredentials
from runtime.secure import mac_key
from tasks.lifecycle import DeleteResult
from tasks.token import CredentialScope, fresh_token, token_cache_key
from tests.support import PASSWORD, cloud_runtime, make_cloud, settings_for

WRONG_PASSWORD = "wrong-Passw0rd-for-alice"
ROTATED_PASSWORD = "rotated-Passw0rd-for-alice"
#: No such image: deleting it is "already gone", so a run needs a token and nothing else.
GONE = DeleteImageParams(image_id="1a2b3c4d-0000-4000-8000-00000000dead")
TOKEN_TASK_NAME = "get-token[alice@demo/eu-de]"


async def _save_block(name: str, password: str) -> None:
    settings = settings_for()  # the endpoints of the current test layout
    await ImsflowCredentials(
        profile="local",
        iam_url=settings.iam_url,
        ecs_url=settings.ecs_url,
        ims_url=settings.ims_url,
        domain="demo",
        username="alice",
        password=SecretStr(password),
    ).asave(name, overwrite=True)


async def _delete(cloud: LocalCloud, block: str | None = None, **settings: Any) -> Any:
    """Run the delete-image flow; its result, or the exception it failed with."""
    with cloud_runtime(cloud, **settings):
        state = await delete_image(GONE, credentials_block=block, return_state=True)
    return state, await state.aresult(raise_on_failure=False)


async def _token_runs(flow_run_id: UUID | None) -> list[TaskRun]:
    """The flow run's get-token task runs, once they are final (the recorder writes them a moment later)."""
    assert flow_run_id is not None
    runs: list[TaskRun] = []
    for _ in range(100):
        async with get_client() as client:
            found = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        runs = [r for r in found if r.name.startswith("get-token")]
        if runs and all(r.state is not None and r.state.is_final() for r in runs):
            return runs
        await asyncio.sleep(0.1)
    raise AssertionError(f"no final get-token task run recorded: {runs}")


def _failed(runs: list[TaskRun]) -> list[TaskRun]:
    return [r for r in runs if r.state is not None and r.state.is_failed()]


def _iam_calls(cloud: LocalCloud) -> int:
    return cloud.stats()["iam.create_token"]


async def test_a_second_block_with_a_wrong_password_fails_at_get_token() -> None:
    cloud = make_cloud()
    await _save_block("alice-right", PASSWORD)
    await _save_block("alice-typo", WRONG_PASSWORD)

    _, first = await _delete(cloud, "alice-right")
    assert isinstance(first, DeleteResult)
    assert _iam_calls(cloud) == 1

    state, error = await _delete(cloud, "alice-typo")

    assert state.is_failed()
    assert _iam_calls(cloud) == 2, "the wrong password must reach IAM, not the token cached for the right one"
    assert isinstance(error, InvalidCredentialsError)
    assert error.status == 401
    assert error.code == "IAM.0062"
    assert "credentials block 'alice-typo'" in str(error)
    assert "fix the password in the block (Prefect UI: Blocks → alice-typo)" in str(error)
    assert error.hint == "Fix the password in the block (Prefect UI: Blocks → alice-typo), then run again."
    failed = _failed(await _token_runs(state.state_details.flow_run_id))
    assert [r.name for r in failed] == [TOKEN_TASK_NAME]
    assert failed[0].state is not None
    message = failed[0].state.message or ""
    assert "InvalidCredentialsError" in message
    assert "credentials block 'alice-typo'" in message
    # The run itself says why (the header of the run page in the UI shows the flow run's state message).
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
    assert flow_run.state is not None
    assert flow_run.state.is_failed()
    run_message = flow_run.state.message or ""
    assert "IAM.0062" in run_message
    assert "credentials block 'alice-typo'" in run_message
    for text in (str(error), error.hint, message, run_message):
        assert PASSWORD not in text
        assert WRONG_PASSWORD not in text


async def test_the_same_user_and_password_make_one_iam_call() -> None:
    cloud = make_cloud()
    await _save_block("alice-one", PASSWORD)
    await _save_block("alice-two", PASSWORD)  # another name, the same credentials: the same cached token

    for block in ("alice-one", "alice-one", "alice-two", None):
        _, result = await _delete(cloud, block)
        assert isinstance(result, DeleteResult)

    assert _iam_calls(cloud) == 1


async def test_settings_with_another_password_miss_the_cache() -> None:
    cloud = make_cloud()
    _, result = await _delete(cloud)
    assert isinstance(result, DeleteResult)
    assert _iam_calls(cloud) == 1

    # A wrong IMSFLOW_PASSWORD: a login, refused, naming the settings rather than a block.
    state, error = await _delete(cloud, password=WRONG_PASSWORD)
    assert _iam_calls(cloud) == 2
    assert isinstance(error, InvalidCredentialsError)
    assert "IMSFLOW_USERNAME/IMSFLOW_PASSWORD from the environment / .env" in str(error)
    assert "fix IMSFLOW_PASSWORD" in str(error)
    assert "block" not in str(error)
    failed = _failed(await _token_runs(state.state_details.flow_run_id))
    assert [r.name for r in failed] == [TOKEN_TASK_NAME]

    # The password is rotated in IAM and in the settings: the new password logs in, it is not handed the
    # token cached for the old one.
    (alice,) = [u for u in cloud.iam.users.values() if u.name == "alice"]
    alice.password = ROTATED_PASSWORD
    tokens_before = set(cloud.iam.tokens)
    _, result = await _delete(cloud, password=ROTATED_PASSWORD)
    assert isinstance(result, DeleteResult)
    assert _iam_calls(cloud) == 3
    assert len(set(cloud.iam.tokens) - tokens_before) == 1
    # ... and is cached in turn.
    _, result = await _delete(cloud, password=ROTATED_PASSWORD)
    assert isinstance(result, DeleteResult)
    assert _iam_calls(cloud) == 3


async def test_the_key_holds_only_a_keyed_hash_of_the_password() -> None:
    cloud = make_cloud()
    state, _ = await _delete(cloud)
    with cloud_runtime(cloud) as settings:
        scope = CredentialScope.from_settings(settings)
        key = token_cache_key(scope, SecretStr(PASSWORD))
        other = token_cache_key(scope, SecretStr(WRONG_PASSWORD))
        secret = mac_key()

    # The key is the file name of the cached token, and a run with the same settings found it.
    assert (Path(PREFECT_HOME.value()) / "storage" / key).is_file()
    assert re.fullmatch(r"imsflow-token-[0-9a-f]{32}", key)
    assert key != other
    # Nothing in the key or the task run's name is the password or an unkeyed hash of it.
    unkeyed = [
        getattr(hashlib, name)(PASSWORD.encode()).hexdigest() for name in ("md5", "sha1", "sha256", "sha512")
    ]
    keyed = hmac.new(secret, PASSWORD.encode(), hashlib.sha256).hexdigest()
    (task_run,) = await _token_runs(state.state_details.flow_run_id)
    assert task_run.name == TOKEN_TASK_NAME
    for text in (key, task_run.name):
        assert PASSWORD not in text
        for digest in [*unkeyed, keyed]:
            assert digest[:12] not in text
    # Keyed: with another result key (another host, or a rotated key) the same credentials give another key.
    with cloud_runtime(cloud, result_key=SecretStr("A" * 43 + "=")) as settings:
        assert token_cache_key(CredentialScope.from_settings(settings), SecretStr(PASSWORD)) != key


@flow
async def _token_fingerprint() -> str:
    token = await fresh_token(CredentialScope.from_settings(runtime.settings()))
    return hashlib.sha256(token.value.get_secret_value().encode()).hexdigest()


async def test_replace_token_writes_the_record_get_token_reads() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud):
        first = await _token_fingerprint()
        replaced = await replace_token(CredentialScope.from_settings(runtime.settings()))
        # The next run takes the replacement from the cache: no third login.
        after = await _token_fingerprint()
    assert _iam_calls(cloud) == 2
    assert after != first
    assert after == hashlib.sha256(replaced.value.get_secret_value().encode()).hexdigest()
