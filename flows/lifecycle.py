"""What happens to an image after it exists: delete it, export it to OBS, prune the old ones.

Run them with ``imsflow delete``, ``imsflow export`` and ``imsflow prune``, from the Prefect UI through the
deployments in ``deployments/``, or directly::

    python flows/lifecycle.py --keep 3 --dry-run
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, Self

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from pydantic import BaseModel, BeforeValidator, Field, model_validator

from imsflow.errors import ImsflowError
from imsflow.models import ExportImageRequest
from imsflow.validation import BucketUrl, CredentialsBlock, ImageId, InstanceId, empty_is_none, form_config
from runtime.credentials import credentials_from_block
from runtime.failures import ending_cleanly
from tasks.lifecycle import (
    DeleteResult,
    ExportResult,
    RetentionDecision,
    RetentionRule,
    ecs_census,
    list_imsflow_images,
    now_utc,
    plan_retention,
    poll_export,
    remove_image,
    submit_export,
)
from tasks.token import flow_token

# ---------------------------------------------------------------------------------------------- delete


class DeleteImageParams(BaseModel):
    """Which image to delete (the deployment's form: ``form_config``)."""

    model_config = form_config("Image", "The private image to delete.")

    image_id: Annotated[
        ImageId,
        Field(description="ID (UUID) of the private image to delete.", json_schema_extra={"position": 0}),
    ]
    timeout_minutes: Annotated[
        int,
        Field(
            title="Timeout (minutes)",
            description="Give up waiting for the image to be gone after this long.",
            ge=1,
            le=240,
            json_schema_extra={"position": 1},
        ),
    ] = 10


# Prefect titles a parameter with its name: each flow's group of `params` is titled for people instead
# (written out in each signature: `prefect deploy` reads it from the source and evaluates no constant).


@flow(name="delete-image", flow_run_name="delete-image-{params.image_id}")
async def delete_image(
    params: Annotated[DeleteImageParams, Field(json_schema_extra={"title": "Image"})],
    credentials_block: CredentialsBlock = "",
) -> DeleteResult:
    """Delete a private image and wait until it is gone.

    An image that is already gone counts as done. An image still being created is refused (IMG.0090).
    """
    return await ending_cleanly(_delete_image(params, credentials_block))


async def _delete_image(params: DeleteImageParams, credentials_block: str | None) -> DeleteResult:
    async with credentials_from_block(credentials_block):
        token = await flow_token()
        result = await remove_image(params.image_id, token, timeout_seconds=params.timeout_minutes * 60.0)
    get_run_logger().info("image %s: %s", result.image_id, result.outcome)
    return result


# ---------------------------------------------------------------------------------------------- export


class ExportImageParams(BaseModel):
    """Which image to export, where to, and in which format (the deployment's form: ``form_config``)."""

    model_config = form_config("Export", "The private image to export, the OBS file to write and its format.")

    image_id: Annotated[
        ImageId,
        Field(description="ID (UUID) of the private image to export.", json_schema_extra={"position": 0}),
    ]
    bucket_url: Annotated[BucketUrl, Field(json_schema_extra={"position": 1})]
    file_format: Annotated[
        Literal["qcow2", "vhd", "zvhd", "vmdk"],
        Field(
            title="File format",
            description="Format of the exported file (ignored with quick export).",
            json_schema_extra={"position": 2},
        ),
    ] = "qcow2"
    quick: Annotated[
        bool,
        Field(
            title="Quick export",
            description="Export fast, as ZVHD2, without conversion (needed above 128 GB).",
            json_schema_extra={"position": 3},
        ),
    ] = False
    timeout_minutes: Annotated[
        int,
        Field(
            title="Timeout (minutes)",
            description="Give up waiting for the export job after this long.",
            ge=1,
            le=24 * 60,
            json_schema_extra={"position": 4},
        ),
    ] = 120

    def to_request(self) -> ExportImageRequest:
        if self.quick:
            return ExportImageRequest(bucket_url=self.bucket_url, is_quick_export=True)
        return ExportImageRequest(bucket_url=self.bucket_url, file_format=self.file_format)


@flow(name="export-image", flow_run_name="export-image-{params.image_id}")
async def export_image(
    params: Annotated[ExportImageParams, Field(json_schema_extra={"title": "Export"})],
    credentials_block: CredentialsBlock = "",
) -> ExportResult:
    """Export a private image to an OBS bucket and wait for the export job to finish."""
    return await ending_cleanly(_export_image(params, credentials_block))


async def _export_image(params: ExportImageParams, credentials_block: str | None) -> ExportResult:
    request = params.to_request()  # the IMS rules, before any call
    async with credentials_from_block(credentials_block):
        token = await flow_token()
        job_id = await submit_export(params.image_id, request, token)
        await poll_export(job_id, token, timeout_seconds=params.timeout_minutes * 60.0)
    result = ExportResult(
        image_id=params.image_id,
        job_id=job_id,
        bucket_url=params.bucket_url,
        file_format="zvhd2 (quick)" if params.quick else params.file_format,
    )
    await acreate_markdown_artifact(
        markdown=f"# Export of `{result.image_id}`\n\n| | |\n|---|---|\n| target | `{result.bucket_url}` |\n"
        f"| format | {result.file_format} |\n| job ID | `{result.job_id}` |\n",
        key="image-export",
        description=f"export of {result.image_id}",
    )
    get_run_logger().info("image %s exported to %s", result.image_id, result.bucket_url)
    return result


# ----------------------------------------------------------------------------------------------- prune


class PruneParams(BaseModel):
    """Retention of the images imsflow made, per ECS. Images imsflow did not make are never touched.

    The deployment's form (``form_config``): ``keep`` 0 and an empty ``max_age_days`` are "no such rule"
    (``None`` here, as Python callers pass it).
    """

    model_config = form_config(
        "Retention",
        "Which of the images imsflow made to keep, per ECS; the others are deleted. Images imsflow did not "
        "make are never touched.",
    )

    instance_ids: Annotated[
        list[InstanceId],
        Field(
            title="ECS IDs",
            description="Prune the images of these ECSs only. Leave empty for every ECS imsflow imaged.",
            json_schema_extra={"position": 0},
        ),
    ] = []
    keep: Annotated[
        int | None,
        Field(
            title="Keep newest",
            description="Keep this many newest active images per ECS; 0: no count rule.",
            ge=0,
            le=1000,
            json_schema_extra={"position": 1},
        ),
        BeforeValidator(lambda value: None if value == 0 else value),
    ] = 7
    max_age_days: Annotated[
        float | None,
        Field(
            title="Keep younger than (days)",
            description="Keep every image younger than this many days. Leave empty for no age rule. "
            "With both rules, an image goes only when both let it go.",
            gt=0,
            json_schema_extra={"position": 2},
        ),
        BeforeValidator(empty_is_none),
    ] = None
    prune_gone_servers: Annotated[
        bool,
        Field(
            title="Prune servers that are gone",
            description="Let the rules delete the last image of an ECS that no longer exists too. Off: that "
            "image is kept, whatever its age, as the server's only copy.",
            json_schema_extra={"position": 3},
        ),
    ] = False
    dry_run: Annotated[
        bool,
        Field(
            title="Dry run", description="Only list what would be deleted.", json_schema_extra={"position": 4}
        ),
    ] = False

    # Returns Self, not PruneParams: `prefect deploy` compiles the class alone (without `from __future__
    # import annotations`) and would evaluate its name before it exists: the stored form would be "Any".
    @model_validator(mode="after")
    def _some_rule(self) -> Self:
        if self.keep is None and self.max_age_days is None:
            raise ValueError(
                "give a rule: keep newest (keep) more than 0, keep younger than (max_age_days), or both; "
                "with no rule every image would go"
            )
        return self

    def rule(self) -> RetentionRule:
        max_age = timedelta(days=self.max_age_days) if self.max_age_days is not None else None
        return RetentionRule(keep=self.keep, max_age=max_age)


class PruneResult(BaseModel):
    dry_run: bool
    kept: list[RetentionDecision]
    deleted: list[RetentionDecision]
    failed: dict[str, str] = {}

    @property
    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        text = f"kept {len(self.kept)}, {verb} {len(self.deleted)}"
        return text + (f", {len(self.failed)} failed" if self.failed else "")


def _table(result: PruneResult) -> list[dict[str, str]]:
    rows = []
    for decision in sorted(result.kept + result.deleted, key=lambda d: (d.instance_id, d.image_id)):
        if decision.action == "keep":
            action = "keep"
        elif decision.image_id in result.failed:
            action = "delete failed"
        else:
            action = "would delete" if result.dry_run else "deleted"
        # What happened and why first: the UUIDs are long, and last they cannot push those off-screen.
        rows.append(
            {
                "action": action,
                "why": result.failed.get(decision.image_id, decision.reason),
                "image": decision.name,
                "created": decision.created_at.strftime("%Y-%m-%d %H:%M") if decision.created_at else "-",
                "status": decision.status,
                "image ID": decision.image_id,
                "ECS": decision.instance_id,
            }
        )
    return rows


@flow(name="prune-images", flow_run_name="prune-images")
async def prune_images(
    params: Annotated[PruneParams, Field(json_schema_extra={"title": "Retention"})],
    credentials_block: CredentialsBlock = "",
) -> PruneResult:
    """Delete imsflow's old images per ECS: keep the N newest and/or the young ones.

    Never touches an image imsflow did not make, an image an ECS runs from, a protected image, or one still
    being created; keeps the last image of an ECS that no longer exists unless ``prune_gone_servers``. A dry
    run only lists what would go. The kept/deleted table is the run's artifact.
    """
    return await ending_cleanly(_prune_images(params, credentials_block))


async def _prune_images(params: PruneParams, credentials_block: str | None) -> PruneResult:
    logger = get_run_logger()
    rule = params.rule()
    async with credentials_from_block(credentials_block):
        token = await flow_token()
        images = await list_imsflow_images(params.instance_ids, token)
        census = await ecs_census(token)
        decisions = plan_retention(
            images,
            rule,
            now=now_utc(),
            in_use=census.images_in_use,
            existing=census.server_ids,
            prune_gone_servers=params.prune_gone_servers,
        )
        doomed = [d for d in decisions if d.action == "delete"]
        failed: dict[str, str] = {}
        if not params.dry_run:
            for decision in doomed:
                try:
                    await remove_image(decision.image_id, token)
                except ImsflowError as exc:
                    # One image that cannot go (it changed state meanwhile) must not keep the rest.
                    failed[decision.image_id] = str(exc)
                    logger.warning("could not delete %s: %s", decision.image_id, exc)
    result = PruneResult(
        dry_run=params.dry_run,
        kept=[d for d in decisions if d.action == "keep"],
        deleted=doomed,
        failed=failed,
    )
    await acreate_table_artifact(
        table=_table(result),
        key="image-retention",
        description=f"{rule.describe()}: {result.summary}" + (" (dry run)" if params.dry_run else ""),
    )
    logger.info("%s: %s", rule.describe(), result.summary)
    if failed:
        raise ImsflowError(
            f"{len(failed)} of {len(doomed)} images could not be deleted: " + "; ".join(failed.values()),
            hint="see the image-retention artifact of the run; the next run tries them again",
        )
    return result


if __name__ == "__main__":
    import asyncio

    import typer

    def main(keep: int = 7, max_age_days: float | None = None, dry_run: bool = False) -> None:
        params = PruneParams(keep=keep, max_age_days=max_age_days, dry_run=dry_run)
        print(asyncio.run(prune_images(params)).summary)

    typer.run(main)
