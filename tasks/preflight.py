"""Dry run: everything ``submit-image`` would depend on, checked with read-only calls; nothing is submitted.

Checks the credentials (the token, or an AK/SK-signed call), the ECS and its state, the image quota
(``GET /v1/cloudimages/quota``), a name clash (an image with that name already), and whether this request
already has a job or an image (a real run would resume or adopt it instead of submitting).
"""

from __future__ import annotations

from typing import Literal

from prefect import task
from pydantic import BaseModel, Field

import runtime
from imsflow.errors import EcsNotFoundError
from imsflow.models import CreateDataImagesRequest, CreateImageFromEcsRequest, IamToken, ImageListQuery
from imsflow.validation import ImageKind
from runtime.auth import client_for
from runtime.naming import name_after_server
from runtime.retry import transient_retries
from tasks.ecs import describe
from tasks.image import REQUEST_TAG, adopt_tagged, made_image, resume_recorded

Verdict = Literal["submit", "resume", "adopt", "refuse"]


class DryRunResult(BaseModel):
    """What a real run would do, and why."""

    dry_run: Literal[True] = True
    would: Verdict
    instance_id: str
    name: str
    ecs: str = ""
    ecs_status: str | None = None
    would_stop_ecs: bool = False
    #: The image kind a real run would make (``imsflow.validation.IMAGE_KINDS``).
    kind: str = "system"
    quota_used: int | None = None
    quota_total: int | None = None
    existing_image_id: str | None = None
    same_name_image_ids: list[str] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)  # each would make a real run fail
    notes: list[str] = Field(default_factory=list)  # worth knowing; a real run would go ahead

    def markdown(self) -> str:
        same_name = ", ".join(f"`{i}`" for i in self.same_name_image_ids) or "none"
        lines = [
            f"# Dry run: image `{self.name}`",
            "",
            f"**A real run would {self.would}** "
            + {
                "submit": "a new image job.",
                "resume": f"the recorded job of this request (image `{self.existing_image_id or '-'}`).",
                "adopt": f"the image this request already made (`{self.existing_image_id}`).",
                "refuse": "to start: see the problems below.",
            }[self.would],
            "",
            "| check | found |",
            "|---|---|",
            f"| ECS | {self.ecs or self.instance_id} |",
            f"| image kind | {self.kind} |",
            f"| image quota | {self.quota_used if self.quota_used is not None else '?'} of "
            f"{self.quota_total if self.quota_total is not None else '?'} used |",
            f"| images named `{self.name}` | {same_name} |",
        ]
        if self.problems:
            lines += ["", "## Problems", *(f"- {p}" for p in self.problems)]
        if self.notes:
            lines += ["", "## Notes", *(f"- {n}" for n in self.notes)]
        lines += ["", "Nothing was submitted."]
        return "\n".join(lines) + "\n"


@task(
    name="dry-run",
    task_run_name="dry-run[{request.instance_id}/{request.name}]",
    **transient_retries(),
)
async def dry_run_check(
    request: CreateImageFromEcsRequest,
    key: str,
    token: IamToken | None,
    stop_if_running: bool,
    refusal: str | None = None,
    data: CreateDataImagesRequest | None = None,
    kind: ImageKind = "system",
) -> DryRunResult:
    """Read-only checks of everything a real run needs; returns what it would do.

    ``request`` (the system-disk image) and ``data`` (the data-disk images of a set, a request of their own)
    are planned already (``tasks.image.plan_images``); ``refusal`` is why planning refused it (a real run
    would refuse as well). ``kind`` is the image kind: a ``full-ecs`` image is one image made of a running or
    stopped ECS (never stopped for it).
    """
    result = DryRunResult(would="submit", instance_id=request.instance_id, name=request.name, kind=kind)
    if refusal is not None:
        result.problems.append(refusal)
    volumes = data.volumes if data is not None else []
    new_images = 1 + len(volumes)
    for member in data.data_images if data is not None else []:
        result.notes.append(f"data image {member.name!r} of volume {member.volume_id} would be made too")
    async with client_for(token) as client:
        try:
            server = await client.ecs.get_server(request.instance_id)
            await name_after_server(request.instance_id, server.name)
        except EcsNotFoundError:
            result.problems.append(f"ECS {request.instance_id} does not exist in this project")
        else:
            result.ecs, result.ecs_status = f"{server.name} ({server.status})", server.status
            if kind == "full-ecs":
                disks = len(server.data_volumes)
                result.notes.append(
                    f"one full-ECS image of its system disk and {disks} data disk(s); the ECS is taken as it "
                    "is (never stopped or started for it)"
                )
                if server.task_state is not None or not (server.is_running or server.is_stopped):
                    result.problems.append(f"{describe(server)}; a full-ECS image needs no task in progress")
            elif not server.is_stopped:
                made = await made_image(client, key, volumes)
                if made is not None:
                    # As in a real run (tasks/ecs.py): a made image needs no stopped ECS.
                    result.notes.append(
                        f"{describe(server)}: it would be left as it is, its image "
                        f"{made.image_id or '-'} is made already"
                    )
                elif stop_if_running and server.is_running:
                    result.would_stop_ecs = True
                    result.notes.append(f"{describe(server)}: it would be stopped (SOFT) first")
                else:
                    result.problems.append(f"{describe(server)}; an image needs a stopped ECS")

        quota = (await client.ims.get_quota()).get("image")
        if quota is not None:
            result.quota_used, result.quota_total = quota.used, quota.quota
            if quota.remaining < new_images:
                result.problems.append(
                    f"the image quota is used up ({quota.used} of {quota.quota})"
                    if quota.remaining < 1
                    else f"the image quota has room for {quota.remaining}, not the set's {new_images} images"
                )

        same_name = await client.ims.list_images(ImageListQuery(name=request.name, imagetype="private"))
        ours = [i for i in same_name if i.tag_map.get(REQUEST_TAG) == key]
        result.same_name_image_ids = [i.id for i in same_name]
        others = [i.id for i in same_name if i.id not in {o.id for o in ours}]
        if others:
            # IMS allows repeated names by default; some accounts refuse them (IMG.0009).
            result.notes.append(
                f"{len(others)} other image(s) named {request.name!r} exist already; this one would be "
                "another (refused where the cloud enforces unique names, IMG.0009)"
            )

        found = await resume_recorded(client, key) or await adopt_tagged(client, key)
    if found is not None:
        result.existing_image_id = found.image_id
        if found.job_id:
            result.notes.append(f"job {found.job_id} of this request is recorded")
    # The ECS check comes before the submission in a real run, so a problem wins over resuming.
    if result.problems:
        result.would = "refuse"
    elif found is not None:
        result.would = "resume" if found.how == "resumed" else "adopt"
    runtime.report(
        "dry-run", f"would {result.would}" + (f": {result.problems[0]}" if result.problems else "")
    )
    return result


__all__ = ["DryRunResult", "dry_run_check"]
