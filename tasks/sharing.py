"""Steps of image sharing: who is a member, change the members, the receiver's answer, wait for the job.

The sharing calls (``POST|DELETE|PUT /v1/cloudimages/members``) each answer a job; the change holds once the
job ended in SUCCESS. Sharing with a project that already is a member, or stopping to share with one that is
not, is not an error here: :func:`share_plan` leaves those projects out (the call is not made for them),
so a run can be repeated. [The local cloud fails such a job, ``IMG.0112`` / ``IMG.0113``: the pages say
nothing, and Glance refuses both.]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from prefect import task
from pydantic import BaseModel

import runtime
from imsflow.models import IamToken, ImageMembers, ImageMembersRequest, ImsJob, UpdateImageMembersRequest
from runtime.auth import client_for
from runtime.retry import transient_retries
from tasks.lifecycle import follow_ims_job


class SharePlan(BaseModel):
    """What a share (or unshare) of one image changes: ``send`` gets the call, ``unchanged`` are left."""

    image_id: str
    remove: bool
    send: list[str]
    unchanged: list[str]


def share_plan(image_id: str, projects: Sequence[str], members: ImageMembers, *, remove: bool) -> SharePlan:
    """The projects a call is needed for: not yet members (share), or members (remove). Pure."""
    wanted = list(dict.fromkeys(projects))
    current = {m.member_id for m in members.members}
    send = [p for p in wanted if (p in current) == remove]
    return SharePlan(
        image_id=image_id, remove=remove, send=send, unchanged=[p for p in wanted if p not in send]
    )


@task(name="list-members", task_run_name="list-members[{image_id}]", **transient_retries())
async def list_members(image_id: str, token: IamToken | None) -> ImageMembers:
    """``GET /v2/images/{image_id}/members``: who the image is shared with, and their answers."""
    async with client_for(token) as client:
        return await client.ims.list_image_members(image_id)


@task(name="submit-members", task_run_name="submit-members[{plan.image_id}]", **transient_retries())
async def submit_members(plan: SharePlan, token: IamToken | None) -> str:
    """Add (``POST``) or remove (``DELETE``) the plan's projects; returns the IMS job ID."""
    request = ImageMembersRequest(images=[plan.image_id], projects=plan.send)
    async with client_for(token) as client:
        if plan.remove:
            job_id = await client.ims.remove_image_members(request)
        else:
            job_id = await client.ims.add_image_members(request)
    verb = "stop sharing with" if plan.remove else "share with"
    runtime.report("submit-members", f"job {job_id}: {verb} {', '.join(plan.send)}")
    return job_id


@task(name="submit-member-status", task_run_name="submit-member-status[{status}]", **transient_retries())
async def submit_member_status(
    image_ids: list[str], status: Literal["accepted", "rejected"], token: IamToken | None
) -> tuple[str, str]:
    """``PUT /v1/cloudimages/members`` as the receiving project (its own ID, from the token or IAM);
    returns ``(job ID, project ID)``."""
    async with client_for(token) as client:
        project_id = await client.resolve_project_id()
        request = UpdateImageMembersRequest(images=image_ids, project_id=project_id, status=status)
        job_id = await client.ims.update_image_members(request)
    runtime.report("submit-member-status", f"job {job_id}: {status} in project {project_id}")
    return job_id, project_id


@task(name="poll-members", task_run_name="poll-members[{job_id}]", **transient_retries())
async def poll_members(job_id: str, token: IamToken | None, timeout_seconds: float) -> ImsJob:
    """Wait for a sharing job to end; a FAIL is a ``JobFailedError`` with the cloud's reason."""
    return await follow_ims_job("poll-members", job_id, token, timeout_seconds)


__all__ = [
    "SharePlan",
    "list_members",
    "poll_members",
    "share_plan",
    "submit_member_status",
    "submit_members",
]
