"""Typed records in Prefect's result storage: what imsflow keeps across task retries, flow runs and crashes.

Each kind of record is one :class:`Records` of a pydantic model, with its own key prefix and serializer:

* :data:`SUBMISSIONS` (``imsflow-submission-<request key>``): the image job a request became, written the
  moment the cloud returns the job ID (``tasks/image.py``), so a retry or a re-run resumes it;
* :data:`POWER` (``imsflow-stopped-<instance id>``): whether imsflow stopped an ECS and owes it a start, and
  whether that start has been sent (``tasks/ecs.py``);
* :data:`TOKENS` (``imsflow-token-<hmac>``): the IAM token, encrypted at rest. It is get-token's own cached
  result (``tasks/token.py``: the task writes it through Prefect's cache); a client that got a 401 replaces
  it here (``runtime/auth.py``), under the same key, so the next run picks up the new token.

Job IDs and power states are not secret: plain JSON, readable for whoever debugs a stuck run. Records live
where Prefect keeps results (``PREFECT_LOCAL_STORAGE_PATH``, or the server's default result storage block),
so every process that shares that storage shares them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from prefect.filesystems import WritableFileSystem
from prefect.results import ResultStore, aget_default_result_storage
from prefect.serializers import JSONSerializer, Serializer
from prefect.settings import get_current_settings
from pydantic import BaseModel, Field

from imsflow.models import IamToken
from runtime import on_reset
from runtime.secure import EncryptedPickleSerializer

M = TypeVar("M", bound=BaseModel)

#: The expiration of a deleted record: long past, so the storage says it does not exist.
_GONE = datetime(2000, 1, 1, tzinfo=UTC)

#: Seconds a looked-up default result storage is used before it is looked up again.
STORAGE_TTL = 60.0
#: The clock of that minute (tests move it).
clock: Callable[[], float] = time.monotonic
_storages: dict[tuple[str, str, str], tuple[float, WritableFileSystem]] = {}


@on_reset
def _forget_storages() -> None:
    _storages.clear()


async def default_storage() -> WritableFileSystem:
    """Prefect's default result storage, looked up at most once a minute per API and settings.

    Without ``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK`` each lookup asks the server for its default storage
    block (``GET /admin/storage``): a round trip per record read or written, three per image request. A
    server's default changes by an operator's hand, rarely; settings that move the storage (another API, block
    or local path, as tests do) are part of the key and take effect at once.
    """
    settings = get_current_settings()
    key = (
        str(settings.api.url),
        str(settings.results.default_storage_block),
        str(settings.results.local_storage_path),
    )
    now = clock()
    if (hit := _storages.get(key)) is not None and now - hit[0] < STORAGE_TTL:
        return hit[1]
    storage = await aget_default_result_storage()
    _storages[key] = (now, storage)
    return storage


class Records(Generic[M]):
    """Records of one model, one per name, under ``prefix + name`` in the default result storage.

    ``encrypted``: cloudpickle + Fernet (``runtime.secure``) and the model object itself, the form Prefect
    writes a task's cached result in; else JSON of ``model_dump(mode="json")``.
    """

    def __init__(self, model: type[M], prefix: str, *, encrypted: bool = False) -> None:
        self.model = model
        self.prefix = prefix
        self.encrypted = encrypted

    def key(self, name: str) -> str:
        """The storage key of the record called ``name``."""
        return f"{self.prefix}{name}"

    def _serializer(self) -> Serializer[Any]:
        return EncryptedPickleSerializer() if self.encrypted else JSONSerializer()

    async def store(self) -> ResultStore:
        """A result store on the default result storage (:func:`default_storage`)."""
        return ResultStore(result_storage=await default_storage(), serializer=self._serializer())

    async def get(self, name: str) -> M | None:
        """The record, or ``None`` when there is none (never written, deleted or expired)."""
        store = await self.store()
        key = self.key(name)
        if not await store.aexists(key):
            return None
        return self.model.model_validate((await store.aread(key)).result)

    async def put(self, name: str, value: M, *, expiration: datetime | None = None) -> None:
        """Write the record (replacing any); after ``expiration`` it reads as absent."""
        obj: Any = value if self.encrypted else value.model_dump(mode="json")
        await (await self.store()).awrite(obj, key=self.key(name), expiration=expiration)  # type: ignore[arg-type]

    async def delete(self, name: str) -> None:
        """Forget the record. Storage blocks cannot delete, so this writes an empty record, long expired."""
        await (await self.store()).awrite(None, key=self.key(name), expiration=_GONE)  # type: ignore[arg-type]


class Submission(BaseModel):
    """The image job a request became: submitted now, resumed from a record, or adopted from an image."""

    request_key: str
    job_id: str | None = None
    image_id: str | None = None
    #: Every image of the request's set when known without its job (adopted, or a finished job): the system
    #: image first, then the data-disk images. Empty otherwise: the job names them (``ImsJob.image_ids``).
    image_ids: list[str] = Field(default_factory=list)
    how: str = "submitted"  # submitted | resumed | adopted
    submitted_at: datetime
    #: The flow run that submitted the job: a retry of that run must not submit again after a FAIL.
    flow_run_id: str | None = None


class PowerRecord(BaseModel):
    """Whether imsflow stopped an ECS and owes it a start, kept in result storage beside the job records.

    A task retry, a flow re-run or a run after a crash then still knows the ECS was running before imsflow
    stopped it, and starts it again, instead of taking it for an ECS that was stopped all along.
    """

    instance_id: str
    stopped_by_imsflow: bool
    #: Written just before the start request: a run that died after it finds the ECS powering on (or running
    #: again) and waits for that start instead of stopping the ECS once more. Cleared with the record.
    start_sent: bool = False
    at: datetime


SUBMISSIONS = Records(Submission, "imsflow-submission-")
POWER = Records(PowerRecord, "imsflow-stopped-")
TOKENS = Records(IamToken, "imsflow-token-", encrypted=True)

__all__ = ["POWER", "SUBMISSIONS", "TOKENS", "PowerRecord", "Records", "Submission"]
