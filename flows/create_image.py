"""Create a private image from an ECS: token → stopped check → submit → poll → image ID.

The steps after the token are ``flows.pipeline.image_one_ecs`` (shared with the fleet); this flow adds the
dry run, the summary artifact, the events and the step timings.

Run it ad hoc with ``imsflow create``, from the Prefect UI through a deployment, or directly::

    python flows/create_image.py --instance-id 6f1c2d7e-0000-4000-8000-000000000001 --name web-1-golden
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.states import Completed
from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from flows.pipeline import image_one_ecs, timed
from flows.sharing import share_with
from imsflow.errors import DataDiskError, InvalidRequestError
from imsflow.models import CreateImageFromEcsRequest, IamToken, ImageTag
from imsflow.redact import install_redaction
from imsflow.validation import (
    MAX_IMAGE_TAGS,
    CredentialsBlock,
    ImageDescription,
    ImageKindParam,
    ImageName,
    InstanceId,
    ProjectId,
    TagParam,
    VaultId,
    VolumeId,
    empty_is_none,
    form_config,
    parse_tag,
)
from runtime.credentials import credentials_from_block
from runtime.events import emit_image_created, emit_image_failed
from runtime.failures import ending_cleanly
from tasks.image import (
    INSTANCE_TAG,
    REQUEST_TAG,
    VOLUME_TAG,
    DataImageResult,
    ImagePlan,
    plan_images,
    request_key,
)
from tasks.preflight import DryRunResult, dry_run_check
from tasks.token import flow_token

OWN_TAG_KEYS = frozenset({REQUEST_TAG, INSTANCE_TAG})
#: A data-disk image carries one more: the volume it was made of.
OWN_DATA_TAG_KEYS = OWN_TAG_KEYS | {VOLUME_TAG}


def check_tag_room(tags: list[str], own: frozenset[str], field: str = "tags") -> None:
    """The user's tags and imsflow's ``own`` fit IMS's ten per image."""
    keys = {parse_tag(tag)[0] for tag in tags} - own
    if len(keys) > MAX_IMAGE_TAGS - len(own):
        raise InvalidRequestError(
            field,
            f"{len(keys)} tags",
            f"at most {MAX_IMAGE_TAGS - len(own)} tags"
            f" (imsflow adds {len(own)} of its own; an image has at most {MAX_IMAGE_TAGS})",
        )


class CreateImageParams(BaseModel):
    """What to image. This model is the deployment's form in the Prefect UI: it holds no secret.

    Titles and descriptions are for the person filling the form; an optional field left empty is not set
    (``imsflow.validation.form_config``).
    """

    model_config = form_config(
        "Image", "The ECS to image, the new image's name, description and tags, and what to do with the ECS."
    )

    instance_id: Annotated[
        InstanceId,
        Field(
            description="ID (UUID) of the ECS whose system disk becomes the image.",
            json_schema_extra={"position": 0},
        ),
    ]
    name: Annotated[ImageName, Field(json_schema_extra={"position": 1})]
    kind: Annotated[ImageKindParam, Field(json_schema_extra={"position": 2})] = "system"
    data_volumes: Annotated[
        list[VolumeId],
        Field(
            title="Data disks",
            description="With the image kind system-and-data: the volume IDs of the data disks to image. "
            "Leave empty for every data disk of the ECS.",
            json_schema_extra={"position": 3},
        ),
    ] = []
    description: Annotated[ImageDescription, Field(json_schema_extra={"position": 4})] = ""
    tags: Annotated[
        list[TagParam],
        Field(
            title="Image tags",
            description="Tags for the image, one key=value each: key 1 to 36 characters, value 0 to 43; "
            "letters, digits, underscores (_) and hyphens (-).",
            json_schema_extra={"position": 5},
        ),
    ] = []
    stop_if_running: Annotated[
        bool,
        Field(
            title="Stop if running",
            description="Stop (SOFT) a running ECS before imaging it, and start it again afterwards.",
            json_schema_extra={"position": 6},
        ),
    ] = False
    restart_after: Annotated[
        bool,
        Field(
            title="Restart after",
            description="If imsflow stopped the ECS, start it again when the image job ends.",
            json_schema_extra={"position": 7},
        ),
    ] = True
    timeout_minutes: Annotated[
        int,
        Field(
            title="Timeout (minutes)",
            description="Give up waiting for the image job after this long.",
            ge=1,
            le=24 * 60,
            json_schema_extra={"position": 8},
        ),
    ] = 30
    idempotency_key: Annotated[
        str | None,
        Field(
            title="Request key",
            description="Runs with the same key are one request: a second run resumes or finds the image "
            "of the first instead of making another. Leave empty to use the ECS and the image name as "
            "the key.",
            max_length=128,
            json_schema_extra={"position": 9},
        ),
        BeforeValidator(empty_is_none),
    ] = None
    dry_run: Annotated[
        bool,
        Field(
            title="Dry run",
            description="Check credentials, the ECS, the quota and the name; report what would happen, "
            "submit nothing.",
            json_schema_extra={"position": 10},
        ),
    ] = False
    share_with: Annotated[
        list[ProjectId],
        Field(
            title="Share with projects",
            description="IDs of projects to share the image (and its data images) with once it is active; "
            "each project then accepts it. Leave empty to share with none.",
            json_schema_extra={"position": 11},
        ),
    ] = []
    vault_id: Annotated[
        VaultId | None,
        Field(
            title="CBR vault ID",
            description="With the image kind full-ecs: the ID of the CBR vault the ECS is backed up into "
            "(required where the cloud backs ECSs up with CBR, as Open Telekom Cloud and the local cloud "
            "do). Leave empty for the other kinds.",
            json_schema_extra={"position": 12},
        ),
        BeforeValidator(empty_is_none),
    ] = None

    # Each field's type checks its IMS rule before the schema constraints, so an error states the rule.
    @field_validator("tags")
    @classmethod
    def _tag_count(cls, value: list[str]) -> list[str]:
        # imsflow adds two tags of its own (tasks.image.with_imsflow_tags); IMS takes ten in all.
        check_tag_room(value, OWN_TAG_KEYS)
        return value

    @model_validator(mode="after")
    def _kind_rules(self) -> Self:
        if self.kind == "system-and-data":
            # A data image carries the user's tags, imsflow's two and its volume's: one fewer for the user.
            check_tag_room(self.tags, OWN_DATA_TAG_KEYS)
        elif self.data_volumes:
            rule = "data disks are imaged only with the kind system-and-data"
            if self.kind == "full-ecs":
                rule += " (a full-ECS image holds every data disk of the ECS: none can be chosen)"
            raise InvalidRequestError("data_volumes", self.data_volumes, rule)
        if self.share_with and self.kind == "full-ecs":
            # restrictions_on_image_sharing.rst: "Only full-ECS images created from CBR backups can be
            # shared."
            raise InvalidRequestError(
                "share_with",
                self.share_with,
                "a full-ECS image made from an ECS cannot be shared (only one made from a CBR backup can)",
            )
        if self.vault_id is not None and self.kind != "full-ecs":
            raise InvalidRequestError(
                "vault_id", self.vault_id, "a CBR vault is named only with the kind full-ecs"
            )
        return self

    def to_request(self) -> CreateImageFromEcsRequest:
        return CreateImageFromEcsRequest(
            name=self.name,
            instance_id=self.instance_id,
            description=self.description or None,
            image_tags=[ImageTag(key=k, value=v) for k, v in map(parse_tag, self.tags)] or None,
        )


class CreateImageResult(BaseModel):
    """The image made (the system image), and with the kind system-and-data its data-disk images."""

    image_id: str
    job_id: str | None
    name: str
    instance_id: str
    how: str
    seconds: dict[str, float]
    kind: str = "system"
    #: The data-disk images of the set (each with its volume ID), in the order of the ECS's disks.
    data_images: list[DataImageResult] = []
    #: The projects the set is shared with (``share_with``), members before or made members by this run.
    shared_with: list[str] = []

    @property
    def image_ids(self) -> list[str]:
        """Every image of the set: the system image first, then each data image."""
        return [self.image_id, *(d.image_id for d in self.data_images)]


def _summary(params: CreateImageParams, result: CreateImageResult) -> str:
    rows = "\n".join(f"| {step} | {secs:.1f} s |" for step, secs in result.seconds.items())
    data = "".join(
        f"| data image ID | `{d.image_id}` ({d.name}, volume `{d.volume_id or '-'}`) |\n"
        for d in result.data_images
    )
    shared = f"| shared with | {', '.join(result.shared_with)} |\n" if result.shared_with else ""
    return (
        f"# Image `{result.name}`\n\n"
        f"| | |\n|---|---|\n| image ID | `{result.image_id}` |\n{data}| job ID | `{result.job_id or '-'}` |\n"
        f"| ECS | `{params.instance_id}` |\n| kind | {result.kind} |\n| submission | {result.how} |\n"
        f"{shared}\n"
        f"| step | time |\n|---|---|\n{rows}\n"
    )


async def _dry_run(
    params: CreateImageParams, request: CreateImageFromEcsRequest, key: str, token: IamToken | None
) -> DryRunResult:
    refusal = None
    plan = ImagePlan(system=request)
    if params.kind != "system":
        try:
            plan = await plan_images(request, params.kind, params.data_volumes, token, params.vault_id)
        except DataDiskError as exc:
            refusal = str(exc)  # a real run would refuse before touching the ECS
    report = await dry_run_check(
        plan.system,
        key,
        token,
        stop_if_running=params.stop_if_running,
        refusal=refusal,
        data=plan.data,
        kind=params.kind,
    )
    await acreate_markdown_artifact(
        markdown=report.markdown(), key="image-dry-run", description=f"dry run for image {params.name}"
    )
    get_run_logger().info("dry run: a real run would %s; nothing was submitted", report.would)
    return report


async def _create_image(params: CreateImageParams) -> CreateImageResult | DryRunResult:
    """Create a private image from an ECS and return its ID; a retry or re-run never makes a second."""
    # Before anything can log: Prefect's run loggers write to its database, which outlives the run.
    install_redaction()
    logger = get_run_logger()
    request = params.to_request()  # validates every field by the IMS rules before any call
    key = request_key(
        params.instance_id,
        params.name,
        params.idempotency_key,
        kind=params.kind,
        data_volumes=params.data_volumes,
    )
    seconds: dict[str, float] = {}

    with timed(seconds, "get-token"):
        token = await flow_token()
    if params.dry_run:
        return await _dry_run(params, request, key, token)

    outcome = await image_one_ecs(
        request,
        key=key,
        kind=params.kind,
        data_volumes=params.data_volumes,
        token=token,
        stop_if_running=params.stop_if_running,
        restart=params.restart_after,
        timeout=timedelta(minutes=params.timeout_minutes).total_seconds(),
        vault_id=params.vault_id,
    )
    seconds.update(outcome.seconds)
    image = outcome.image
    set_ids = [image.image_id, *(d.image_id for d in image.data_images)]
    if params.share_with:
        with timed(seconds, "share-image"):
            for image_id in set_ids:  # the page's limit and refusals are per image; the members list too
                await share_with(image_id, params.share_with, token)

    result = CreateImageResult(
        image_id=image.image_id,
        job_id=image.job_id,
        name=image.name,
        instance_id=params.instance_id,
        how=outcome.how,
        seconds=seconds,
        kind=params.kind,
        data_images=image.data_images,
        shared_with=list(dict.fromkeys(params.share_with)),
    )
    await acreate_markdown_artifact(
        markdown=_summary(params, result), key="image-summary", description=f"image {result.name}"
    )
    steps = ", ".join(f"{step} {secs:.0f} s" for step, secs in seconds.items())
    for data in result.data_images:
        logger.info("data image %s (%s) of volume %s is active", data.image_id, data.name, data.volume_id)
    logger.info(
        "image %s (%s) of ECS %s is active (%s) after %.0f s: %s",
        result.image_id,
        result.name,
        outcome.check.name,
        outcome.how,
        sum(seconds.values()),
        steps,
    )
    also = f" with {len(result.data_images)} data images" if result.data_images else ""
    return Completed(message=f"image {result.image_id}{also} active ({outcome.how})", data=result)  # type: ignore[return-value]


@flow(
    name="create-image-from-ecs",
    flow_run_name="create-image-{params.instance_id}-{params.name}",
    # No flow retry (the retry story: runtime/retry.py). Every cloud call is in a task that retries what is
    # transient, and every wait absorbs transient errors; what reaches the flow is not transient or was
    # retried already. Prefect cannot make a flow retry conditional, so one would repeat all of that and a
    # wrong password's login. A re-run, or `prefect flow-run retry`, is safe: it resumes this request's job,
    # and after a failed job of the same run raises that failure before touching the ECS (flows/pipeline.py).
    # Events for automations (notify on failure); once per run, on its final state.
    on_completion=[emit_image_created],
    on_failure=[emit_image_failed],
    on_crashed=[emit_image_failed],
)
async def create_image_from_ecs(
    # Prefect titles a parameter with its name; the form's group is "Image" instead (written out here:
    # `prefect deploy` reads this signature from the source, where a module constant is not evaluated).
    params: Annotated[CreateImageParams, Field(json_schema_extra={"title": "Image"})],
    credentials_block: CredentialsBlock = "",
) -> CreateImageResult | DryRunResult:
    """Create a private image from an ECS and return its ID; a retry or re-run never makes a second.

    With ``params.dry_run`` nothing is submitted: the result says what a real run would do.

    With ``credentials_block`` the tasks use that block's credentials (the parameter is the block's name,
    never a secret); without it (``""``; ``None`` is taken too), the ``IMSFLOW_*`` settings of the process
    running the flow.
    """
    # An imsflow error ends the run Failed with one line (what failed, the cloud's code and request ID,
    # what to do) and no traceback; the caller still gets the exception (runtime/failures.py).
    async with credentials_from_block(credentials_block):
        return await ending_cleanly(_create_image(params))


if __name__ == "__main__":
    import asyncio

    import typer

    def main(
        instance_id: str = typer.Option(..., help="ECS ID"),
        name: str = typer.Option(..., help="image name"),
        description: str = "",
        stop_if_running: bool = False,
    ) -> None:
        params = CreateImageParams(
            instance_id=instance_id, name=name, description=description, stop_if_running=stop_if_running
        )
        result = asyncio.run(create_image_from_ecs(params))
        print(result.markdown() if isinstance(result, DryRunResult) else result.image_id)

    typer.run(main)
