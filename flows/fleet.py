"""Image a fleet of ECSs: chosen by ID or by tag / name / status, as many at once as IMS allows.

Each ECS goes through the same pipeline as the single-image flow (``flows.pipeline.image_one_ecs``: stopped
check, exactly-once submission, adaptive polling, the power-state rules), so a re-run of a fleet resumes or
adopts what the earlier run started instead of making second images. One ECS failing does not stop the
others; the run ends Failed, naming them.

Concurrency: one image job per slot of the global concurrency limit ``imsflow-ims-jobs`` (IMS's
concurrent-job cap), and every API request spends a slot of the global rate limit ``imsflow-api`` (see
runtime/budget.py). Both are Prefect global limits, so flow runs on several machines share them.

Scale-out: with ``chunk_deployment`` set, this run only selects the ECSs and names the images; it runs
the work as chunks of ``chunk_size`` ECSs through that deployment (``run_deployment``), so workers on
several machines share one fleet. The chunks see the same limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import statistics
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

import runtime
from flows.pipeline import image_one_ecs
from imsflow.client import ssl_context
from imsflow.errors import (
    DataVolumeNotFoundError,
    ImageQuotaError,
    ImsflowError,
    JobTimeoutError,
    SlotsUnavailableError,
)
from imsflow.models import CreateImageFromEcsRequest, IamToken, ImageTag, Server
from imsflow.polling import PollPolicy
from imsflow.validation import (
    IMAGE_KINDS,
    NAME_PATTERN,
    CredentialsBlock,
    ImageDescription,
    ImageKindParam,
    InstanceId,
    TagParam,
    VaultId,
    VolumeId,
    empty_is_none,
    form_config,
    parse_tag,
)
from runtime.auth import client_for
from runtime.budget import API_LIMIT, JOBS_LIMIT, ApiBudget, BudgetedTransport, ensure_limits
from runtime.credentials import credentials_from_block
from runtime.failures import ending_cleanly
from runtime.retry import transient_retries
from runtime.slots import Claim, JobSlots, LimitState, read_limit, reconcile
from tasks.image import request_key
from tasks.quota import QuotaFit, check_image_quota
from tasks.token import flow_token

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

TEMPLATE_FIELDS = "{server_name}, {server_id}, {date} (e.g. {date:%Y%m%d})"
_NAME_RE = re.compile(NAME_PATTERN)


def render_name(template: str, server_name: str, server_id: str, day: date) -> str:
    """The image name for one ECS; ``str.format`` fields: server_name, server_id, date."""
    return template.format(server_name=server_name, server_id=server_id, date=day)


class FleetParams(BaseModel):
    """Which ECSs to image and how. The deployment's form in the Prefect UI: it holds no secret."""

    model_config = form_config(
        "Fleet", "Which ECSs to image, how to name and tag their images, and how many to image at once."
    )

    instance_ids: Annotated[
        list[InstanceId],
        Field(
            title="Instance IDs",
            description="ECS IDs to image. Leave empty to select by tag, name and status instead.",
            json_schema_extra={"position": 0},
        ),
    ] = []
    tags: Annotated[
        list[TagParam],
        Field(
            title="ECS tags",
            description="Select the ECSs carrying all of these tags, one key=value each.",
            json_schema_extra={"position": 1},
        ),
    ] = []
    name_contains: Annotated[
        str | None,
        Field(
            title="Name contains",
            description="Select the ECSs whose name contains this text. Leave empty for any name.",
            max_length=64,
            json_schema_extra={"position": 2},
        ),
        BeforeValidator(empty_is_none),
    ] = None
    status: Annotated[
        Literal["SHUTOFF", "ACTIVE"] | None,
        # A select of three in the form; "any" is None here, and None is "any" in JSON (a chunk's parameters).
        BeforeValidator(lambda value: None if value in ("any", "") else value),
        PlainSerializer(lambda value: value or "any", return_type=str, when_used="json"),
        WithJsonSchema({"type": "string", "enum": ["any", "SHUTOFF", "ACTIVE"]}),
        Field(
            title="ECS status",
            description="Select only the ECSs in this status: SHUTOFF (stopped) or ACTIVE (running); "
            "any: every status.",
            json_schema_extra={"position": 3, "default": "any"},
        ),
    ] = None
    name_template: Annotated[
        str,
        Field(
            title="Image name template",
            description=f"The name of each image, with the fields {TEMPLATE_FIELDS}.",
            min_length=1,
            max_length=128,
            json_schema_extra={"position": 4},
        ),
    ] = "{server_name}-{date:%Y%m%d}"
    description: Annotated[ImageDescription, Field(json_schema_extra={"position": 5})] = ""
    image_tags: Annotated[
        list[TagParam],
        Field(
            title="Image tags",
            description="Tags for every image, one key=value each: key 1 to 36 characters, value 0 to 43; "
            "letters, digits, underscores (_) and hyphens (-).",
            json_schema_extra={"position": 6},
        ),
    ] = []
    kind: Annotated[
        ImageKindParam,
        Field(
            description="What to image of each ECS: "
            + "; ".join(f"{kind}: {words}" for kind, words in IMAGE_KINDS.items())
            + ". Data-disk images are named after the image and the disk's device (web-1-20261127-vdb).",
            json_schema_extra={"position": 7},
        ),
    ] = "system"
    data_volumes: Annotated[
        list[VolumeId],
        Field(
            title="Data disks",
            description="With the image kind system-and-data: the volume IDs of the data disks to image "
            "(each ECS images those of them it has). Leave empty for every data disk of every ECS.",
            json_schema_extra={"position": 8},
        ),
    ] = []
    stop_if_running: Annotated[
        bool,
        Field(
            title="Stop if running",
            description="Stop (SOFT) running ECSs before imaging them, and start them again afterwards.",
            json_schema_extra={"position": 9},
        ),
    ] = False
    restart_after: Annotated[
        bool,
        Field(
            title="Restart after",
            description="Start the ECSs imsflow stopped again when their image jobs end.",
            json_schema_extra={"position": 10},
        ),
    ] = True
    max_concurrent: Annotated[
        int,
        Field(
            title="Concurrent image jobs",
            description="IMS's limit on running image jobs per project (40 by default).",
            ge=1,
            le=1000,
            json_schema_extra={"position": 11},
        ),
    ] = 40
    requests_per_second: Annotated[
        float,
        Field(
            title="API request budget (per second)",
            description="All fleet runs together stay under this request rate.",
            gt=0,
            le=10_000,
            json_schema_extra={"position": 12},
        ),
    ] = 20.0
    timeout_minutes: Annotated[
        int,
        Field(
            title="Timeout (minutes)",
            description="Give up waiting for one image job after this long.",
            ge=1,
            le=24 * 60,
            json_schema_extra={"position": 13},
        ),
    ] = 60
    slot_wait_minutes: Annotated[
        int,
        Field(
            title="Wait for job slots (minutes)",
            description="Fail when other runs hold every IMS job slot for this long (`imsflow limits` "
            "shows who holds them).",
            ge=0,
            le=24 * 60,
            json_schema_extra={"position": 14},
        ),
    ] = 60
    run_date: Annotated[
        date | None,
        Field(
            title="Image date",
            description="The {date} of the name template. Leave empty for today (UTC).",
            json_schema_extra={"position": 15},
        ),
        BeforeValidator(empty_is_none),
    ] = None
    chunk_deployment: Annotated[
        str | None,
        Field(
            title="Chunk deployment",
            description="Run the work as chunks through this deployment (flow-name/deployment-name), "
            "so that workers on several machines share the fleet. Leave empty to run it all here.",
            json_schema_extra={"position": 16},
        ),
        BeforeValidator(empty_is_none),
    ] = None
    chunk_size: Annotated[
        int,
        Field(
            title="Chunk size",
            description="ECSs per chunk run (with a chunk deployment).",
            ge=1,
            le=10_000,
            json_schema_extra={"position": 17},
        ),
    ] = 100
    fit_quota: Annotated[
        bool,
        Field(
            title="Image as many as fit the quota",
            description="When the project's image quota has no room for every new image, image as many as "
            "fit (in selection order) and skip the rest, instead of refusing the whole fleet.",
            json_schema_extra={"position": 18},
        ),
    ] = False
    dry_run: Annotated[
        bool,
        Field(
            title="Dry run",
            description="Select the ECSs, name their images and check the image quota; stop, start and "
            "submit nothing.",
            json_schema_extra={"position": 19},
        ),
    ] = False
    vault_id: Annotated[
        VaultId | None,
        Field(
            title="CBR vault ID",
            description="With the image kind full-ecs: the ID of the CBR vault the ECSs are backed up into "
            "(required where the cloud backs ECSs up with CBR, as Open Telekom Cloud and the local cloud "
            "do). Leave empty for the other kinds.",
            json_schema_extra={"position": 20},
        ),
        BeforeValidator(empty_is_none),
    ] = None

    @field_validator("name_template")
    @classmethod
    def _template_renders(cls, value: str) -> str:
        try:
            render_name(value, "web-1", "6f1c2d7e-0000-4000-8000-000000000001", date(2026, 1, 31))
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(f"the template may use only {TEMPLATE_FIELDS}: {exc!r}") from None
        return value

    # Returns Self, not FleetParams: `prefect deploy` compiles the class alone (without `from __future__
    # import annotations`) and would evaluate its name before it exists: the stored form would be "Any".
    @model_validator(mode="after")
    def _one_selection(self) -> Self:
        check_one_selection(
            self.instance_ids, {"tag": self.tags, "name": self.name_contains, "status": self.status}
        )
        if self.data_volumes and self.kind != "system-and-data":
            raise ValueError(
                "data disks (data_volumes) are imaged only with the kind system-and-data"
                + (
                    " (a full-ECS image holds every data disk: none can be chosen)"
                    if self.kind == "full-ecs"
                    else ""
                )
            )
        if self.vault_id is not None and self.kind != "full-ecs":
            raise ValueError("a CBR vault (vault_id) is named only with the kind full-ecs")
        return self


def check_one_selection(instance_ids: list[str], filters: dict[str, object]) -> None:
    """ECSs are chosen either by instance IDs or by filters (``{"tag": tags, "name": name_contains, ...}``),
    never both and never neither: the rule of every form that selects ECSs (fleet, coverage)."""
    names = {"tag": "tags", "name": "name_contains"}
    if instance_ids and any(filters.values()):
        raise ValueError(f"choose ECSs either by instance IDs or by {'/'.join(filters)} filters, not both")
    if not instance_ids and not any(filters.values()):
        fields = ", ".join(names.get(f, f) for f in filters)
        raise ValueError(f"choose ECSs: instance IDs, or at least one of {fields}")


class Target(BaseModel):
    instance_id: str
    server_name: str
    image_name: str
    #: The data disks chosen for this ECS's set (those of ``FleetParams.data_volumes`` it has; empty: all).
    data_volumes: list[str] = []
    #: How many data images its set makes (0 for the kind system): the quota counts 1 + this.
    data_disks: int = 0


class FleetRow(BaseModel):
    """One ECS's outcome: a row of the run's table artifact."""

    instance_id: str
    server_name: str
    image_name: str
    #: submitted | resumed | adopted | failed | skipped (no room in the quota); a dry run's: would submit |
    #: made already.
    outcome: str
    image_id: str | None = None
    #: The data-disk images of the ECS's set (kind system-and-data), in the order of its disks.
    data_image_ids: list[str] = []
    #: How many data images its set makes (a dry run's and a skipped row's count: they have no IDs).
    data_disks: int = 0
    job_id: str | None = None
    queued_seconds: float = 0.0
    job_seconds: float = 0.0
    total_seconds: float = 0.0
    error: str | None = None


class FleetResult(BaseModel):
    rows: list[FleetRow]
    wall_seconds: float
    #: Nothing was done: the rows say what a real run would do (``would submit``, ``made already``).
    dry_run: bool = False
    #: The image quota against the fleet's new images.
    quota: QuotaFit | None = None
    #: Why a real run would refuse (a dry run that does not fit the quota), else None.
    refusal: str | None = None
    #: The image kind of the run (``imsflow.validation.IMAGE_KINDS``).
    kind: str = "system"

    @property
    def failed(self) -> list[FleetRow]:
        return [r for r in self.rows if r.outcome == "failed"]


class Selection(BaseModel):
    targets: list[Target]
    missing: list[FleetRow]


@task(
    name="select-ecs",
    cache_policy=NO_CACHE,
    **transient_retries(),
)
async def select_servers(params: FleetParams, token: IamToken | None, day: date) -> Selection:
    """The fleet: the given IDs (each looked up for its name), or the ECS list API filtered, page by page."""
    servers: list[Server] = []
    missing: list[FleetRow] = []
    async with client_for(token) as client:
        if params.instance_ids:
            ids = list(dict.fromkeys(params.instance_ids))  # keep order, drop repeats
            found = await asyncio.gather(*(client.ecs.get_server(i) for i in ids), return_exceptions=True)
            for instance_id, item in zip(ids, found, strict=True):
                if isinstance(item, Server):
                    servers.append(item)
                elif isinstance(item, ImsflowError) and not item.retryable:
                    missing.append(
                        FleetRow(
                            instance_id=instance_id,
                            server_name="?",
                            image_name="?",
                            outcome="failed",
                            error=str(item),
                        )
                    )
                else:
                    raise item  # transient (or unknown): retry the selection as a whole
        else:
            async for server in client.ecs.iter_servers(
                name=params.name_contains,
                status=params.status,
                tags=params.tags,
            ):
                servers.append(server)
    targets = [_target(params, s, day) for s in servers]
    if params.kind == "system-and-data" and params.data_volumes:
        # Every volume asked for is a data disk of one of the ECSs, or the whole fleet is refused (no POST).
        attached = {v for s in servers for v in s.data_volume_ids}
        unknown = [v for v in params.data_volumes if v not in attached]
        if unknown:
            raise DataVolumeNotFoundError(f"not a data disk of any ECS of the fleet: {', '.join(unknown)}")
    runtime.report("fleet:selected", f"{len(targets) + len(missing)} ECSs selected")
    return Selection(targets=targets, missing=missing)


def _target(params: FleetParams, server: Server, day: date) -> Target:
    target = Target(
        instance_id=server.id,
        server_name=server.name,
        image_name=render_name(params.name_template, server.name, server.id, day),
    )
    if params.kind == "system-and-data":  # a full-ECS image is one image, whatever its disks
        disks = server.data_volume_ids
        if params.data_volumes:
            wanted = set(params.data_volumes)
            target.data_volumes = [v for v in disks if v in wanted]
            target.data_disks = len(target.data_volumes)
        else:
            target.data_disks = len(disks)
    return target


class DurationHistory:
    """Durations of this fleet's finished jobs: what the next poller expects its job to take."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def add(self, seconds: float) -> None:
        self.seconds.append(seconds)

    def policy(self) -> PollPolicy:
        settings = runtime.settings()
        expected = statistics.median(self.seconds) if self.seconds else None
        return PollPolicy(
            initial_delay=settings.poll_initial_delay,
            max_interval=settings.poll_max_interval,
            expected_seconds=expected,
        )


def _request(params: FleetParams, target: Target) -> CreateImageFromEcsRequest:
    return CreateImageFromEcsRequest(
        name=target.image_name,
        instance_id=target.instance_id,
        description=params.description or None,
        image_tags=[ImageTag(key=k, value=v) for k, v in map(parse_tag, params.image_tags)] or None,
    )


async def _image_one(
    params: FleetParams, target: Target, token: IamToken | None, history: DurationHistory, since: float
) -> FleetRow:
    """One ECS, start to end, inside a held job slot; never raises (a failure becomes the row's outcome)."""
    rt = runtime.current()
    row = FleetRow(
        instance_id=target.instance_id,
        server_name=target.server_name,
        image_name=target.image_name,
        data_disks=target.data_disks,
        outcome="failed",
    )
    started = rt.clock()
    row.queued_seconds = started - since
    try:
        if not _NAME_RE.match(target.image_name):
            raise ValueError(f"image name {target.image_name!r} from the template breaks the IMS rules")
        if params.data_volumes and not target.data_volumes:
            raise DataVolumeNotFoundError(
                f"ECS {target.server_name} ({target.instance_id}) has none of the data disks asked for"
            )
        request = _request(params, target)
        key = _key(params, target)
        runtime.report("fleet:running", f"{target.server_name}: imaging")
        outcome = await image_one_ecs(
            request,
            key=key,
            kind=params.kind,
            data_volumes=target.data_volumes,
            token=token,
            stop_if_running=params.stop_if_running,
            restart=params.restart_after,
            timeout=params.timeout_minutes * 60.0,
            poll_policy=history.policy(),
            progress_artifact=False,
            vault_id=params.vault_id,
        )
        image = outcome.image
        row.job_seconds = sum(
            outcome.seconds.get(step, 0.0)
            for step in ("submit-image", "poll-job", "submit-data-images", "poll-data-job")
        )
        for job_seconds in image.job_durations:
            # The cloud's own begin/end times, job by job: our wall time would add submission and detection
            # delays, and a set's two jobs summed would make every later poll wait twice as long; feeding
            # either back would make every later poll later still.
            history.add(job_seconds)
        row.outcome, row.image_id, row.job_id = outcome.how, image.image_id, image.job_id
        row.data_image_ids = [d.image_id for d in image.data_images]
        also = f" with {len(image.data_images)} data images" if image.data_images else ""
        runtime.report("fleet:done", f"{target.server_name}: image {image.image_id}{also} active")
    except JobTimeoutError as exc:
        # The job may still be running: the pipeline left the ECS stopped, as IMS needs it until the job ends.
        row.error = f"timeout: {exc} (ECS left stopped; run again to resume)"
        runtime.report("fleet:failed", f"{target.server_name}: {row.error}")
    except Exception as exc:
        row.error = str(exc) or type(exc).__name__
        runtime.report("fleet:failed", f"{target.server_name}: {row.error}")
    row.total_seconds = rt.clock() - since
    return row


#: Seconds between looks at the job limit while no slot is free.
SLOT_POLL_SECONDS = 5.0
#: Seconds between two "waiting for a job slot" log lines.
SLOT_SAY_SECONDS = 60.0


def _slots_line(state: LimitState) -> str:
    return f"{state.name} has {state.held} of {state.limit} slots held by {state.holders()}"


async def _image_all(params: FleetParams, targets: list[Target], token: IamToken | None) -> list[FleetRow]:
    """Image ``targets`` with at most ``max_concurrent`` jobs at once, each in a slot of the job limit.

    ``max_concurrent`` lanes share one queue; a lane images ECS after ECS. Lanes start in groups, each group
    under one claim of the global limit covering all its lanes, held until they have all finished (an
    acquisition is a database write that a loaded Prefect server answers in seconds, so one per job would
    leave IMS capacity idle). The first group asks for every lane at once; when other runs hold slots, the
    group size halves down to one lane. When not one slot is free, the run frees what dead runs left behind
    (``runtime.slots.reconcile``), says that it waits and for whom, and looks again every few seconds; with
    no lane started after ``slot_wait_minutes`` it fails, naming the holders (``SlotsUnavailableError``).
    """
    from prefect.client.orchestration import get_client

    logger = get_run_logger()
    rt = runtime.current()
    queue: asyncio.Queue[tuple[int, Target]] = asyncio.Queue()
    for item in enumerate(targets):
        queue.put_nowait(item)
    rows: list[FleetRow | None] = [None] * len(targets)
    history = DurationHistory()
    since = rt.clock()

    async def lane() -> None:
        while True:
            try:
                index, target = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            rows[index] = await _image_one(params, target, token, history, since)

    async with get_client() as client, JobSlots(client, JOBS_LIMIT) as slots:

        async def group(claim: Claim) -> None:
            try:
                await asyncio.gather(*(lane() for _ in range(claim.slots)))
            finally:
                await slots.give_back(claim)

        healed = await reconcile(client, JOBS_LIMIT)
        if healed.released:
            logger.warning(healed.released_line())
        groups: list[asyncio.Task[None]] = []
        try:
            await _start_lanes(params, client, slots, queue, groups, group)
        except Exception as exc:
            if not groups:
                raise
            # The lanes started go on (they drain the queue); only adding more failed.
            logger.warning("no more lanes: %s", exc)
        await asyncio.gather(*groups)
    if slots.healed is not None and slots.healed.released:
        logger.warning(slots.healed.released_line())
    return [r for r in rows if r is not None]


async def _start_lanes(
    params: FleetParams,
    client: PrefectClient,
    slots: JobSlots,
    queue: asyncio.Queue[tuple[int, Target]],
    groups: list[asyncio.Task[None]],
    group: Callable[[Claim], Coroutine[Any, Any, None]],
) -> None:
    """Take slots for up to ``max_concurrent`` lanes, in groups, waiting (bounded) while none is free."""
    logger = get_run_logger()
    rt = runtime.current()
    want = min(params.max_concurrent, queue.qsize())
    bound = params.slot_wait_minutes * 60.0
    lanes, size = 0, want
    waiting_since: float | None = None
    next_say = 0.0
    while lanes < want and not queue.empty():
        size = min(size, want - lanes)
        claim = await slots.try_take(size)
        if claim is not None:
            if waiting_since is not None:
                logger.info("got %d job slot(s) after waiting %.0f s", size, rt.clock() - waiting_since)
                waiting_since = None
            groups.append(asyncio.create_task(group(claim)))
            lanes += size
            size = want - lanes
            continue
        if size > 1:
            size = max(1, size // 2)
            continue
        # Not one slot free: free what runs that are gone left behind, then wait, saying so.
        state = await reconcile(client, JOBS_LIMIT)
        if state.released:
            logger.warning(state.released_line())
        if state.held >= state.limit:
            now = rt.clock()
            waiting_since = now if waiting_since is None else waiting_since
            waited = now - waiting_since
            if lanes == 0 and waited >= bound:
                raise SlotsUnavailableError(
                    f"no IMS job slot came free in {waited:.0f} s: {_slots_line(state)}; "
                    "`imsflow limits` shows them, `imsflow limits --reset` frees those of runs gone"
                )
            if now >= next_say:
                line = f"waiting for an IMS job slot ({waited:.0f} of {bound:.0f} s): {_slots_line(state)}"
                runtime.report("fleet:waiting", line)  # the CLI's display, and the run's log
                next_say = now + SLOT_SAY_SECONDS
            await rt.sleep(SLOT_POLL_SECONDS)
            state.limit, state.held = await read_limit(client, JOBS_LIMIT)
        size = max(1, min(state.limit - state.held, want - lanes))


def _table(rows: list[FleetRow]) -> list[dict[str, Any]]:
    return [
        {
            "ECS": r.server_name,
            "instance ID": r.instance_id,
            "image name": r.image_name,
            "outcome": r.outcome,
            "image ID": r.image_id or "",
            "data images": " ".join(r.data_image_ids) or (str(r.data_disks) if r.data_disks else ""),
            "job ID": r.job_id or "",
            "queued s": round(r.queued_seconds, 1),
            "job s": round(r.job_seconds, 1),
            "total s": round(r.total_seconds, 1),
            "error": r.error or "",
        }
        for r in rows
    ]


def _failure_message(failed: list[FleetRow], total: int) -> str:
    listed = "; ".join(f"{r.server_name} ({r.instance_id}): {r.error}" for r in failed[:20])
    more = f"; and {len(failed) - 20} more" if len(failed) > 20 else ""
    return f"{len(failed)} of {total} ECSs failed: {listed}{more}"


async def _run_chunks(
    params: FleetParams, targets: list[Target], day: date, credentials_block: str | None
) -> list[FleetRow]:
    from prefect.deployments import run_deployment

    deployment = params.chunk_deployment
    assert deployment is not None
    chunks = [targets[i : i + params.chunk_size] for i in range(0, len(targets), params.chunk_size)]

    async def one(chunk: list[Target]) -> list[FleetRow]:
        child = params.model_copy(
            update={
                "instance_ids": [t.instance_id for t in chunk],
                "tags": [],
                "name_contains": None,
                "status": None,
                "run_date": day,  # every chunk names its images for the same day
                "chunk_deployment": None,
            }
        )
        run = await run_deployment(  # type: ignore[misc]
            deployment,
            parameters={"params": child.model_dump(mode="json"), "credentials_block": credentials_block},
            poll_interval=2,
        )
        state = run.state
        result = await state.aresult(raise_on_failure=False) if state is not None else None
        if isinstance(result, BaseModel):
            # Same fields, another class: the worker loaded flows/fleet.py from the deployment's entrypoint,
            # so the unpickled result is an instance of that copy of the module.
            with contextlib.suppress(ValidationError):
                return FleetResult.model_validate(result, from_attributes=True).rows
        why = f"chunk run {run.name} ended {state.type.value if state else 'unknown'}: {result!r}"
        return [
            FleetRow(
                instance_id=t.instance_id,
                server_name=t.server_name,
                image_name=t.image_name,
                outcome="failed",
                error=why,
            )
            for t in chunk
        ]

    return [row for rows in await asyncio.gather(*(one(c) for c in chunks)) for row in rows]


def _run_name() -> str:
    """``fleet-<what was selected>``, e.g. ``fleet-backup=nightly`` or ``fleet-12-ids``."""
    from prefect.runtime import flow_run

    raw = flow_run.parameters.get("params")
    try:
        p = FleetParams.model_validate(raw, from_attributes=True)
    except ValidationError:
        return "fleet"
    parts = [f"{len(p.instance_ids)}-ids"] if p.instance_ids else [*p.tags]
    parts += [f"name~{p.name_contains}"] if p.name_contains else []
    parts += [p.status.lower()] if p.status else []
    return "fleet-" + "-".join(parts)


@flow(
    name="create-images-for-fleet",
    flow_run_name=_run_name,
    persist_result=True,  # a parent fleet run reads its chunks' results
    timeout_seconds=None,
)
async def create_images_for_fleet(
    # The form's group is "Fleet", not the parameter's name (written out: `prefect deploy` reads the source).
    params: Annotated[FleetParams, Field(json_schema_extra={"title": "Fleet"})],
    credentials_block: CredentialsBlock = "",
) -> FleetResult:
    """Image every selected ECS once; Failed (naming them) if any ECS failed.

    With ``credentials_block`` the tasks (and the chunk runs) use that block's credentials; without it, the
    ``IMSFLOW_*`` settings of the process running the flow.
    """
    # An imsflow error of the fleet's own (the quota, the job slots, the token) ends the run Failed with one
    # line and no traceback; failures of single ECSs are rows of the table (runtime/failures.py).
    async with credentials_from_block(credentials_block):
        return await ending_cleanly(_create_images_for_fleet(params, credentials_block))


async def _create_images_for_fleet(params: FleetParams, credentials_block: str | None) -> FleetResult:
    logger = get_run_logger()
    rt = runtime.current()
    settings = runtime.settings()
    started = rt.clock()
    day = params.run_date or datetime.now(UTC).date()

    inner = rt.transport
    if inner is None:
        inner = httpx.AsyncHTTPTransport(
            verify=ssl_context(settings.verify_tls), limits=httpx.Limits(max_connections=200)
        )
    if params.dry_run:
        # Reads only, and no global limit touched: a dry run changes nothing, Prefect's limits included.
        try:
            with runtime.use_runtime(transport=inner):
                token = await flow_token()
                selection = await select_servers(params, token, day)
                fit = await _check_quota(params, selection.targets, token)
        finally:
            if rt.transport is None:
                await inner.aclose()
        return await _dry_run_result(params, selection, fit, rt.clock() - started)  # type: ignore[return-value]

    limits = await ensure_limits(
        max_concurrent_jobs=params.max_concurrent, requests_per_second=params.requests_per_second
    )
    logger.info("limits: %s", ", ".join(f"{k} {v}" for k, v in limits.items()))
    budget = ApiBudget(params.requests_per_second, API_LIMIT)
    transport = BudgetedTransport(inner, budget)
    try:
        with runtime.use_runtime(transport=transport):
            token = await flow_token()
            selection = await select_servers(params, token, day)
            fit = await _check_quota(params, selection.targets, token)
            targets, skipped = _within_quota(params, selection.targets, fit)
            if params.chunk_deployment:
                rows = await _run_chunks(params, targets, day, credentials_block)
            else:
                rows = await _image_all(params, targets, token)
    finally:
        await budget.aclose()
        if rt.transport is None:
            await transport.close_inner()

    result = FleetResult(
        rows=selection.missing + rows + skipped,
        wall_seconds=rt.clock() - started,
        quota=fit,
        kind=params.kind,
    )
    await acreate_table_artifact(
        table=_table(result.rows),
        key="fleet-images",
        description=f"{len(result.rows)} ECSs, {len(result.failed)} failed, {result.wall_seconds:.0f} s",
    )
    logger.info("API requests %d (%d budget acquisitions)", budget.requests, budget.acquisitions)
    if result.failed:
        message = _failure_message(result.failed, len(result.rows))
        logger.error(message)
        state: State[FleetResult] = Failed(message=message, data=result)
        return state  # type: ignore[return-value]
    done = f"{len(result.rows) - len(skipped)} images active"
    if skipped:
        done += f", {len(skipped)} ECSs skipped: no room in the image quota"
    return Completed(message=done, data=result)  # type: ignore[return-value]


def _key(params: FleetParams, target: Target) -> str:
    return request_key(
        target.instance_id, target.image_name, kind=params.kind, data_volumes=target.data_volumes
    )


def _keys(params: FleetParams, targets: list[Target]) -> list[str]:
    return [_key(params, t) for t in targets]


async def _check_quota(params: FleetParams, targets: list[Target], token: IamToken | None) -> QuotaFit:
    """The quota against the new images: one per ECS, plus one per data disk of a system-and-data set (a
    full-ECS image is one image, whatever its disks)."""
    return await check_image_quota(_keys(params, targets), token, [1 + t.data_disks for t in targets])


def _quota_refusal(fit: QuotaFit) -> str:
    return (
        f"only {fit.room} of the fleet's {fit.new_images} new images fit the image quota ({fit.used} of "
        f"{fit.total} used): make room with `imsflow prune` (or delete images), or image the first "
        f"{fit.room} with --fit-quota (the form's 'Image as many as fit the quota')"
    )


def _within_quota(
    params: FleetParams, targets: list[Target], fit: QuotaFit
) -> tuple[list[Target], list[FleetRow]]:
    """The targets to image, and rows for those skipped because the quota has no room for their images.

    Refuses the whole fleet (``ImageQuotaError``) when the new images do not fit, unless ``fit_quota``:
    then the first new images that fit are made (images made already are adopted or resumed, whatever the
    quota), and the rest are skipped.
    """
    logger = get_run_logger()
    if fit.fits:
        return targets, []
    if not params.fit_quota:
        raise ImageQuotaError(_quota_refusal(fit))
    new, room = set(fit.new), fit.room
    keep: list[Target] = []
    skipped: list[FleetRow] = []
    for target, key in zip(targets, _keys(params, targets), strict=True):
        needs = fit.images_of(key) if key in new else 0
        if needs <= room:
            room -= needs
            keep.append(target)
        else:
            skipped.append(
                FleetRow(
                    instance_id=target.instance_id,
                    server_name=target.server_name,
                    image_name=target.image_name,
                    data_disks=target.data_disks,
                    outcome="skipped",
                    error=f"no room in the image quota ({fit.used} of {fit.total} used)",
                )
            )
    logger.warning(
        "image quota: imaging the first %d new images, skipping %d ECSs", fit.room - room, len(skipped)
    )
    return keep, skipped


async def _dry_run_result(
    params: FleetParams, selection: Selection, fit: QuotaFit, seconds: float
) -> State[Any]:
    """What a real run would do: per ECS, a new image or one made already; and whether the quota fits."""
    logger = get_run_logger()
    new = set(fit.new)
    rows = selection.missing + [
        FleetRow(
            instance_id=t.instance_id,
            server_name=t.server_name,
            image_name=t.image_name,
            data_disks=t.data_disks,
            outcome="would submit" if key in new else "made already",
        )
        for t, key in zip(selection.targets, _keys(params, selection.targets), strict=True)
    ]
    refusal = None if fit.fits or params.fit_quota else _quota_refusal(fit)
    result = FleetResult(
        rows=rows, wall_seconds=seconds, dry_run=True, quota=fit, refusal=refusal, kind=params.kind
    )
    await acreate_table_artifact(table=_table(rows), key="fleet-dry-run", description=fit.line())
    made = len(selection.targets) - len(new)
    message = f"dry run: {fit.new_images} images would be made, {made} made already; "
    message += fit.line()
    if not fit.fits:
        message += (
            f"; the first {fit.room} would be made, the rest skipped"
            if params.fit_quota
            else f"; a real run would refuse: {refusal}"
        )
    kinds = {"system": "system-disk images", "system-and-data": "system and data-disk images"}
    message += f"; image kind {params.kind} ({kinds.get(params.kind, 'one full-ECS image per ECS')})"
    logger.info(message)
    return Completed(message=message, data=result)


__all__ = ["FleetParams", "FleetResult", "FleetRow", "create_images_for_fleet", "render_name"]
