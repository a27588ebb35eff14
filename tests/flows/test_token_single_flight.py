"""One IAM token for everything: concurrent tasks in concurrent flow runs.

The lock under it (threads, coroutines, a killed process): tests/tasks/test_locking.py, without Prefect.
"""

from __future__ import annotations

import asyncio

import pytest
from prefect import flow

import runtime
from tasks.token import CredentialScope, fresh_token
from tests.support import cloud_runtime, make_cloud


@flow
async def _tokens(n: int) -> set[str]:
    scope = CredentialScope.from_settings(runtime.settings())
    tokens = await asyncio.gather(*(fresh_token(scope) for _ in range(n)))
    return {t.value.get_secret_value() for t in tokens}


# Slow by nature: three flow runs race on the test server, whose SQLite answers concurrent flow-run creation
# with "database is locked" (503); Prefect's client waits 2 s, then 4 s, in real time before it tries again.
@pytest.mark.slow
async def test_concurrent_tasks_and_flows_make_one_iam_call() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud):
        # 3 flow runs at once, each with 5 get-token tasks at once: all race for the same cache key.
        results = await asyncio.gather(*(_tokens(5) for _ in range(3)))
    assert cloud.stats()["iam.create_token"] == 1
    assert len(set().union(*results)) == 1
