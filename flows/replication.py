"""Replicate an image within its region: a copy, encrypted with a KMS key or in another enterprise project.

check-replicable → submit-copy (exactly once: ``tasks.replication``) → poll-job → tag-copy. Run it with
``imsflow replicate``, from the Prefect UI through a deployment, or directly::

    python flows/replication.py IMAGE_ID --name web-1-encrypted --cmk-id bd66288c-9081-460a-8227-4cbd0c814cb4

The page: ``ims_apis/image_replication/replicating_an_image_within_a_region.rst`` (full-ECS images and
images made from ISO files cannot be replicated: refused before the copy call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import BaseModel, BeforeValidator, Field

from imsflow.errors import InvalidRequestError
from imsflow.models import CopyImageRequest
from imsflow.validation import (
    DESCRIPTION_PATTERN,
    UUID_PATTERN,
    CredentialsBlock,
    ImageId,
    ImageName,
    check_description,
    check_enterprise_project_id,
    check_uuid,
    empty_is_none,
    form_config,
)
from runtime.credentials import credentials_from_block
from runtime.failures import ending_cleanly
from tasks.image import poll_job
from tasks.replication import (
    USER_DESCRIPTION_MAX,
    CopyRequest,
    check_replicable,
    copy_request_key,
    submit_copy,
    tag_copy,
)
from tasks.token import flow_token


def _checked(check: Callable[[str, str], str], field: str) -> BeforeValidator:
    """A form field's rule, checked after an empty value became ``None`` (not set)."""

    def run(value: object) -> object:
        value = empty_is_none(value)
        return check(value, field) if isinstance(value, str) else value

    return BeforeValidator(run)


def check_copy_description(value: str, field: str = "description") -> str:
    """IMS's description rule, less the room imsflow's marker takes (``tasks.replication``)."""
    check_description(value, field)
    if len(value) > USER_DESCRIPTION_MAX:
        raise InvalidRequestError(
            field,
            value,
            f"at most {USER_DESCRIPTION_MAX} characters for a copy (imsflow adds its marker; IMS takes 1024)",
        )
    return value


class ReplicateImageParams(BaseModel):
    """Which image to copy, and what the copy is (the deployment's form)."""

    model_config = form_config(
        "Replication",
        "The image to copy within its region, the copy's name, and optionally the KMS key to encrypt it with "
        "or the enterprise project to put it in.",
    )

    image_id: Annotated[
        ImageId,
        Field(
            description="ID (UUID) of the image to copy: a system-disk or data-disk image (not a full-ECS "
            "image, not one made from an ISO file).",
            json_schema_extra={"position": 0},
        ),
    ]
    name: Annotated[ImageName, Field(description="Name of the copy.", json_schema_extra={"position": 1})]
    description: Annotated[
        str | None,
        Field(
            title="Description",
            description=f"Description of the copy (at most {USER_DESCRIPTION_MAX} characters, no line "
            "breaks or angle brackets); imsflow adds a marker to it, by which a re-run finds the copy.",
            max_length=USER_DESCRIPTION_MAX,
            pattern=DESCRIPTION_PATTERN,
            json_schema_extra={"position": 2},
        ),
        _checked(check_copy_description, "description"),
    ] = None
    cmk_id: Annotated[
        str | None,
        Field(
            title="KMS key ID",
            description="ID (UUID) of the KMS key to encrypt the copy with. Leave empty for no encryption.",
            pattern=UUID_PATTERN,
            json_schema_extra={"position": 3},
        ),
        _checked(check_uuid, "cmk_id"),
    ] = None
    enterprise_project_id: Annotated[
        str | None,
        Field(
            title="Enterprise project ID",
            description="The enterprise project of the copy: 0 for the default project, or its ID (UUID). "
            "Leave empty for the default project.",
            json_schema_extra={"position": 4},
        ),
        _checked(check_enterprise_project_id, "enterprise_project_id"),
    ] = None
    timeout_minutes: Annotated[
        int,
        Field(
            title="Timeout (minutes)",
            description="Give up waiting for the copy job after this long.",
            ge=1,
            le=24 * 60,
            json_schema_extra={"position": 5},
        ),
    ] = 60

    def to_request(self) -> CopyImageRequest:
        return CopyImageRequest(
            name=self.name,
            description=self.description,
            cmk_id=self.cmk_id,
            enterprise_project_id=self.enterprise_project_id,
        )

    def key(self) -> str:
        return copy_request_key(self.image_id, self.name, self.cmk_id, self.enterprise_project_id)


class ReplicateResult(BaseModel):
    """The copy made (or found again: ``how`` is ``submitted``, ``resumed`` or ``adopted``)."""

    source_id: str
    image_id: str
    name: str
    job_id: str | None
    how: str
    cmk_id: str | None = None
    enterprise_project_id: str = "0"
    tags: list[str] = []


@flow(name="replicate-image", flow_run_name="replicate-image-{params.image_id}")
async def replicate_image(
    params: Annotated[ReplicateImageParams, Field(json_schema_extra={"title": "Replication"})],
    credentials_block: CredentialsBlock = "",
) -> ReplicateResult:
    """Copy an image within its region (encrypted with ``cmk_id``, in ``enterprise_project_id``), wait for the
    copy to be active and tag it as imsflow's. Running it again finds the copy instead of making another."""
    return await ending_cleanly(_replicate_image(params, credentials_block))


async def _replicate_image(params: ReplicateImageParams, credentials_block: str | None) -> ReplicateResult:
    async with credentials_from_block(credentials_block):
        token = await flow_token()
        source = await check_replicable(params.image_id, token)
        copy = CopyRequest(image_id=params.image_id, request=params.to_request(), key=params.key())
        submission = await submit_copy(copy, token)
        made = await poll_job(submission, token, params.timeout_minutes * 60.0)
        tags = await tag_copy(made.image_id, copy.key, source, token)
    get_run_logger().info("image %s copied to %s (%s)", params.image_id, made.image_id, submission.how)
    return ReplicateResult(
        source_id=params.image_id,
        image_id=made.image_id,
        name=made.name,
        job_id=submission.job_id,
        how=submission.how,
        cmk_id=params.cmk_id,
        enterprise_project_id=params.enterprise_project_id or "0",
        tags=tags,
    )


if __name__ == "__main__":
    import asyncio

    import typer

    def main(
        image_id: str,
        name: str = typer.Option(...),
        description: str | None = None,
        cmk_id: str | None = None,
        enterprise_project_id: str | None = None,
    ) -> None:
        params = ReplicateImageParams(
            image_id=image_id,
            name=name,
            description=description,
            cmk_id=cmk_id,
            enterprise_project_id=enterprise_project_id,
        )
        print(asyncio.run(replicate_image(params)).image_id)

    typer.run(main)
