"""Image sharing: the owner shares an image with other projects, the receiving project accepts (or rejects).

Run them with ``imsflow share`` and ``imsflow accept``, or from Python. ``accept-image`` runs in the
RECEIVING project: name that project's credentials block in ``credentials_block`` (or run it with the
receiver's settings). The pages: ``ims_apis/image_sharing/*.rst``; the limits:
``common_parameters/restrictions_on_image_sharing.rst`` (own private images only, 256 projects per image).
"""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from imsflow.models import IamToken
from imsflow.validation import CredentialsBlock, ImageId, ProjectId, form_config
from runtime.credentials import credentials_from_block
from runtime.failures import ending_cleanly
from tasks.sharing import list_members, poll_members, share_plan, submit_member_status, submit_members
from tasks.token import flow_token

TIMEOUT = Annotated[
    int,
    Field(
        title="Timeout (minutes)",
        description="Give up waiting for the sharing job after this long.",
        ge=1,
        le=240,
        json_schema_extra={"position": 9},
    ),
]


class ShareImageParams(BaseModel):
    """Which image to share (or stop sharing) with which projects (the deployment's form)."""

    model_config = form_config("Sharing", "The private image and the projects to share it with.")

    image_id: Annotated[
        ImageId,
        Field(description="ID (UUID) of your private image to share.", json_schema_extra={"position": 0}),
    ]
    projects: Annotated[
        list[ProjectId],
        Field(
            title="Project IDs",
            description="IDs of the projects to share the image with (at most 256 per image).",
            min_length=1,
            json_schema_extra={"position": 1},
        ),
    ]
    remove: Annotated[
        bool,
        Field(
            title="Stop sharing",
            description="Stop sharing the image with these projects instead.",
            json_schema_extra={"position": 2},
        ),
    ] = False
    timeout_minutes: TIMEOUT = 10


class ShareResult(BaseModel):
    image_id: str
    remove: bool
    changed: list[str]  # projects the call was made for
    unchanged: list[str]  # already members (share) or not members (remove)
    job_id: str | None  # None: nothing to change


@flow(name="share-image", flow_run_name="share-image-{params.image_id}")
async def share_image(
    params: Annotated[ShareImageParams, Field(json_schema_extra={"title": "Sharing"})],
    credentials_block: CredentialsBlock = "",
) -> ShareResult:
    """Share a private image with other projects (or stop sharing it) and wait for the job.

    A project that already is a member (or, removing, is not one) is left as it is: running it again
    changes nothing. The receiving projects then accept the image (``accept-image``).
    """
    return await ending_cleanly(_share_image(params, credentials_block))


async def _share_image(params: ShareImageParams, credentials_block: str | None) -> ShareResult:
    async with credentials_from_block(credentials_block):
        token = await flow_token()
        return await share_with(
            params.image_id, params.projects, token, params.remove, params.timeout_minutes
        )


async def share_with(
    image_id: str,
    projects: list[str],
    token: IamToken | None,
    remove: bool = False,
    timeout_minutes: int = 10,
) -> ShareResult:
    """The sharing steps for one image (also used after a golden image is made): members, change, wait."""
    members = await list_members(image_id, token)
    plan = share_plan(image_id, projects, members, remove=remove)
    job_id = None
    if plan.send:
        job_id = await submit_members(plan, token)
        await poll_members(job_id, token, timeout_seconds=timeout_minutes * 60.0)
    result = ShareResult(
        image_id=image_id, remove=remove, changed=plan.send, unchanged=plan.unchanged, job_id=job_id
    )
    verb = "no longer shared with" if remove else "shared with"
    get_run_logger().info(
        "image %s %s %s (%d unchanged)",
        image_id,
        verb,
        ", ".join(plan.send) or "nobody new",
        len(plan.unchanged),
    )
    return result


class AcceptImageParams(BaseModel):
    """Which shared images the receiving project accepts or rejects (the deployment's form)."""

    model_config = form_config(
        "Accept",
        "Images shared with this project (run with the receiving project's credentials block).",
    )

    image_ids: Annotated[
        list[ImageId],
        Field(
            title="Image IDs",
            description="IDs of the images shared with this project.",
            min_length=1,
            json_schema_extra={"position": 0},
        ),
    ]
    status: Annotated[
        Literal["accepted", "rejected"],
        Field(
            title="Answer",
            description="accepted: the images appear in the project's image list; rejected: they do not "
            "(they can still be used to create ECSs).",
            json_schema_extra={"position": 1},
        ),
    ] = "accepted"
    timeout_minutes: TIMEOUT = 10


class AcceptResult(BaseModel):
    image_ids: list[str]
    project_id: str
    status: str
    job_id: str


@flow(name="accept-image", flow_run_name="accept-image-{params.status}")
async def accept_image(
    params: Annotated[AcceptImageParams, Field(json_schema_extra={"title": "Accept"})],
    credentials_block: CredentialsBlock = "",
) -> AcceptResult:
    """Accept (or reject) images shared with this project and wait for the job. Runs in the RECEIVING
    project: ``credentials_block`` names its credentials."""
    return await ending_cleanly(_accept_image(params, credentials_block))


async def _accept_image(params: AcceptImageParams, credentials_block: str | None) -> AcceptResult:
    async with credentials_from_block(credentials_block):
        token = await flow_token()
        job_id, project_id = await submit_member_status(params.image_ids, params.status, token)
        await poll_members(job_id, token, timeout_seconds=params.timeout_minutes * 60.0)
    get_run_logger().info("project %s %s %s", project_id, params.status, ", ".join(params.image_ids))
    return AcceptResult(
        image_ids=params.image_ids, project_id=project_id, status=params.status, job_id=job_id
    )
