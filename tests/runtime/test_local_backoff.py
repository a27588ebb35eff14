"""``runtime.retry.local_server_backoff``: Prefect's client retries a server of this machine in tenths of a
second (point 5 of the retry story), and the CLI uses it for exactly those servers."""

from __future__ import annotations

from collections.abc import Iterator

import prefect.client.base as client_base
import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from prefect.utilities.math import clamped_poisson_interval

from cli.flowrun import server_is_local
from runtime.retry import JITTER, LOCAL_SERVER_BACKOFF_SCALE, LOCAL_SERVER_MAX_RETRIES, local_server_backoff


@pytest.fixture(autouse=True)
def prefects_own_backoff(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Prefect's own backoff and retry count, whatever the worker ran before (the flow tests' session
    fixture keeps the local backoff on for the rest of the worker's session)."""
    monkeypatch.setitem(vars(client_base), JITTER, clamped_poisson_interval)
    with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 5}):
        yield


def backoff(seconds: float) -> float:
    """The delay Prefect's client would sleep for a backoff of ``seconds`` (its jitter function)."""
    delay: float = vars(client_base)[JITTER](seconds, 0.3)
    return delay


def test_the_client_backoff_is_a_tenth_inside_and_prefects_own_after() -> None:
    before = PREFECT_CLIENT_MAX_RETRIES.value()
    with local_server_backoff():
        delays = [backoff(16.0) for _ in range(200)]
        assert max(delays) <= 16.0 * LOCAL_SERVER_BACKOFF_SCALE * 1.3
        assert min(delays) >= 16.0 * LOCAL_SERVER_BACKOFF_SCALE * 0.7
        assert PREFECT_CLIENT_MAX_RETRIES.value() == max(before, LOCAL_SERVER_MAX_RETRIES)
        with local_server_backoff():  # nested: still a tenth, not a hundredth
            assert min(backoff(16.0) for _ in range(200)) >= 16.0 * LOCAL_SERVER_BACKOFF_SCALE * 0.7
    assert vars(client_base)[JITTER] is clamped_poisson_interval
    assert PREFECT_CLIENT_MAX_RETRIES.value() == before
    assert min(backoff(16.0) for _ in range(200)) >= 16.0 * 0.7


def test_restored_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError), local_server_backoff():
        raise RuntimeError("the flow failed")
    assert vars(client_base)[JITTER] is clamped_poisson_interval


def test_a_users_higher_retry_count_is_kept() -> None:
    with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 25}), local_server_backoff():
        assert PREFECT_CLIENT_MAX_RETRIES.value() == 25


@pytest.mark.parametrize(
    ("api_url", "local"),
    [
        ("", True),  # the temporary server the command starts
        ("http://127.0.0.1:4200/api", True),
        ("http://localhost:4200/api", True),
        ("http://[::1]:4200/api", True),
        ("https://prefect.example.com/api", False),
        ("http://10.0.0.7:4200/api", False),
    ],
)
def test_which_servers_are_local(api_url: str, local: bool) -> None:
    with temporary_settings(updates={PREFECT_API_URL: api_url or None}):
        assert server_is_local() is local


def test_a_server_that_is_gone_fails_the_run_no_later_than_with_prefects_own_backoff() -> None:
    """More, shorter tries, but no longer in all: the client's nominal backoff is 2**try seconds."""
    ours = sum(LOCAL_SERVER_BACKOFF_SCALE * 2**n for n in range(1, LOCAL_SERVER_MAX_RETRIES + 1))
    prefects = sum(2**n for n in range(1, 5 + 1))  # PREFECT_CLIENT_MAX_RETRIES' default, 5
    assert LOCAL_SERVER_MAX_RETRIES > 5
    assert ours <= prefects
