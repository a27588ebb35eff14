"""``runtime.records``: typed records in Prefect's result storage, and ``runtime.reset``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

import runtime
from imsflow.models import IamToken
from runtime import auth, retry, secure
from runtime.records import POWER, SUBMISSIONS, TOKENS, PowerRecord, Records, Submission


class Note(BaseModel):
    text: str
    at: datetime


@pytest.fixture(autouse=True)
def local_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Result storage in a folder of this test's own: local file storage, no Prefect server. (Without a server
    to ask for its default storage block Prefect would start a temporary one, 10 s, to hear "none".)"""
    from prefect.settings import (
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        temporary_settings,
    )

    with temporary_settings(
        {PREFECT_LOCAL_STORAGE_PATH: tmp_path / "storage", PREFECT_SERVER_EPHEMERAL_ENABLED: False}
    ):
        yield tmp_path / "storage"


NOTES = Records(Note, "imsflow-test-note-")


async def test_a_record_reads_back_as_its_model() -> None:
    assert await NOTES.get("a") is None
    note = Note(text="hello", at=datetime(2026, 1, 2, tzinfo=UTC))
    await NOTES.put("a", note)
    assert await NOTES.get("a") == note
    assert await NOTES.get("b") is None


async def test_put_replaces_and_delete_forgets() -> None:
    await NOTES.put("a", Note(text="one", at=datetime.now(UTC)))
    await NOTES.put("a", Note(text="two", at=datetime.now(UTC)))
    assert (found := await NOTES.get("a")) is not None
    assert found.text == "two"
    await NOTES.delete("a")
    assert await NOTES.get("a") is None
    await NOTES.delete("never-written")  # nothing there: no error


async def test_an_expired_record_is_absent() -> None:
    await NOTES.put("old", Note(text="x", at=datetime.now(UTC)), expiration=datetime.now(UTC) - timedelta(1))
    assert await NOTES.get("old") is None


async def test_plain_records_are_json_on_disk_and_the_token_is_not_readable(local_storage: Path) -> None:
    await SUBMISSIONS.put("k1", Submission(request_key="k1", job_id="job-1", submitted_at=datetime.now(UTC)))
    await POWER.put("ecs-1", PowerRecord(instance_id="ecs-1", stopped_by_imsflow=True, at=datetime.now(UTC)))
    token = IamToken(
        value=SecretStr("MIIsecret-token-value"), expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    await TOKENS.put("digest", token)

    assert "job-1" in (local_storage / SUBMISSIONS.key("k1")).read_text()
    assert "stopped_by_imsflow" in (local_storage / POWER.key("ecs-1")).read_text()
    raw = (local_storage / TOKENS.key("digest")).read_bytes()
    assert b"MIIsecret" not in raw
    assert b"imsflow-encrypted-pickle" in raw
    assert await TOKENS.get("digest") == token
    assert (await SUBMISSIONS.get("k1")) is not None


def test_every_record_kind_has_a_prefix_of_its_own() -> None:
    prefixes = [records.prefix for records in (SUBMISSIONS, POWER, TOKENS)]
    assert len(set(prefixes)) == len(prefixes)
    assert all(p.startswith("imsflow-") for p in prefixes)


def test_reset_forgets_every_process_wide_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMSFLOW_REGION", "eu-nl")
    runtime.reset()
    assert runtime.settings().region == "eu-nl"
    monkeypatch.setenv("IMSFLOW_REGION", "eu-de")
    assert runtime.settings().region == "eu-nl"  # read once, kept
    auth._project_ids[("iam", "ak", "eu-nl")] = "p"
    token = IamToken(value=SecretStr("a" * 20), expires_at=datetime.now(UTC))
    auth._successors["x"] = token
    secure.fernet()
    retry.set_testing(True)
    with runtime.use_runtime(reporters=(lambda step, message: None,)):
        runtime.reset()
        assert runtime.current() == runtime.Runtime()

    assert runtime.settings().region == "eu-de"
    assert auth._project_ids == {}
    assert auth._successors == {}
    assert secure._fernet_for.cache_info().currsize == 0
    assert not retry.is_testing()


async def test_the_default_storage_is_looked_up_once_a_minute_and_anew_when_settings_move_it(
    local_storage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from runtime import records

    lookups: list[str] = []
    real = records.aget_default_result_storage  # type: ignore[attr-defined]

    async def counted() -> object:
        lookups.append("lookup")
        return await real()

    monkeypatch.setattr(records, "aget_default_result_storage", counted)
    now = [1000.0]
    monkeypatch.setattr(records, "clock", lambda: now[0])

    for name in ("a", "b", "c"):
        await NOTES.put(name, Note(text=name, at=datetime.now(UTC)))
    assert len(lookups) == 1, "one lookup serves the records of the next minute"
    now[0] += records.STORAGE_TTL + 1
    assert await NOTES.get("a") is not None
    assert len(lookups) == 2, "a minute later the server is asked again"
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: local_storage.parent / "elsewhere"}):
        assert await NOTES.get("a") is None, "storage moved by settings: the new place, at once"
    assert len(lookups) == 3
    runtime.reset()
    await NOTES.get("a")
    assert len(lookups) == 4, "runtime.reset forgets the lookup"
