"""Coverage you can trust: does every selected ECS have an active image younger than the maximum age?

The ECSs are selected as the fleet selects them (instance IDs, or tags and a name filter: the fleet's own
``select-ecs`` step), the images imsflow made are listed once, and ``tasks.coverage.plan_coverage`` decides.
Every ECS without a recent active image is a *gap*: a row of the ``image-coverage`` table artifact, an
``imsflow.coverage.gap`` event (the ECS is its resource), and the run ends Failed with a
``CoverageGapError``, so schedules, the runs list and notifications see it. Run it with ``imsflow coverage``,
from the ``coverage`` deployment (daily, after the nightly fleet), or directly::

    python flows/coverage.py --tag backup=nightly --max-age 26h
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Self

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from prefect.states import Completed
from pydantic import BaseModel, BeforeValidator, Field, ValidationError, model_validator

from flows.fleet import FleetParams, check_one_selection, select_servers
from imsflow.errors import CoverageGapError
from imsflow.validation import (
    CredentialsBlock,
    InstanceId,
    MaxAge,
    TagParam,
    empty_is_none,
    form_config,
    parse_age,
)
from runtime.credentials import credentials_from_block
from runtime.events import emit_coverage_gap
from runtime.failures import ending_cleanly
from tasks.coverage import CoverageRow, SelectedEcs, age_text, check_coverage
from tasks.lifecycle import list_imsflow_images
from tasks.token import flow_token

#: The default maximum age: a nightly fleet plus two hours of slack.
DEFAULT_MAX_AGE = "26h"


class CoverageParams(BaseModel):
    """Which ECSs must have a recent image, and how recent. The deployment's form: it holds no secret."""

    model_config = form_config(
        "Coverage",
        "Which ECSs must have an active image imsflow made, and how old that image may be at most. The run "
        "fails when any of them has none.",
    )

    instance_ids: Annotated[
        list[InstanceId],
        Field(
            title="Instance IDs",
            description="ECS IDs to check. Leave empty to select by tag and name instead.",
            json_schema_extra={"position": 0},
        ),
    ] = []
    tags: Annotated[
        list[TagParam],
        Field(
            title="ECS tags",
            description="Check the ECSs carrying all of these tags, one key=value each (as the fleet "
            "selects them, e.g. backup=nightly).",
            json_schema_extra={"position": 1},
        ),
    ] = []
    name_contains: Annotated[
        str | None,
        Field(
            title="Name contains",
            description="Check the ECSs whose name contains this text. Leave empty for any name.",
            max_length=64,
            json_schema_extra={"position": 2},
        ),
        BeforeValidator(empty_is_none),
    ] = None
    max_age: Annotated[
        MaxAge,
        Field(
            title="Maximum age",
            description="An ECS is covered when its newest active image is younger than this: a number and "
            "a unit, e.g. 26h, 90m, 2d or 1w (m minutes, h hours, d days, w weeks).",
            json_schema_extra={"position": 3},
        ),
    ] = DEFAULT_MAX_AGE

    # Returns Self, not CoverageParams: `prefect deploy` compiles the class alone (see FleetParams).
    @model_validator(mode="after")
    def _one_selection(self) -> Self:
        check_one_selection(self.instance_ids, {"tag": self.tags, "name": self.name_contains})
        return self

    def fleet(self) -> FleetParams:
        """The same selection as fleet parameters (the fleet's ``select-ecs`` step takes those)."""
        return FleetParams(instance_ids=self.instance_ids, tags=self.tags, name_contains=self.name_contains)

    def selection(self) -> str:
        """``backup=nightly``, ``name~web``, ``3 IDs``: what was selected, for lines and run names."""
        if self.instance_ids:
            return f"{len(self.instance_ids)} IDs"
        return " ".join([*self.tags, *([f"name~{self.name_contains}"] if self.name_contains else [])])


class CoverageResult(BaseModel):
    rows: list[CoverageRow]
    max_age: str
    selection: str
    checked_at: datetime

    @property
    def gaps(self) -> list[CoverageRow]:
        return [r for r in self.rows if r.verdict == "gap"]

    @property
    def summary(self) -> str:
        """The run's one-line state message."""
        limit = age_text(parse_age(self.max_age))
        if not self.rows:
            return f"no ECS matches {self.selection}: nothing is covered"
        if not self.gaps:
            n = len(self.rows)
            return f"every ECS covered: {n} ECSs ({self.selection}) have an active image younger than {limit}"
        names = ", ".join(r.server_name if r.server_name != "?" else r.instance_id for r in self.gaps[:10])
        more = f" and {len(self.gaps) - 10} more" if len(self.gaps) > 10 else ""
        return (
            f"{len(self.gaps)} of {len(self.rows)} ECSs ({self.selection}) have no active image younger than "
            f"{limit}: {names}{more}"
        )


def table(result: CoverageResult) -> list[dict[str, str]]:
    """The artifact's rows: the verdict and why first, then the ECS and its newest image."""
    return [
        {
            "verdict": r.verdict,
            "reason": r.reason,
            "ECS": r.server_name,
            "ECS ID": r.instance_id,
            "newest image": r.image_name or "-",
            "age": r.age,
        }
        for r in result.rows
    ]


def _run_name() -> str:
    """``coverage-backup=nightly``, ``coverage-3-ids``."""
    from prefect.runtime import flow_run

    try:
        p = CoverageParams.model_validate(flow_run.parameters.get("params"), from_attributes=True)
    except ValidationError:
        return "coverage"
    return "coverage-" + p.selection().replace(" ", "-").lower()


@flow(name="image-coverage", flow_run_name=_run_name)
async def check_image_coverage(
    # The form's group is "Coverage", not the parameter's name (`prefect deploy` reads it from the source).
    params: Annotated[CoverageParams, Field(json_schema_extra={"title": "Coverage"})],
    credentials_block: CredentialsBlock = "",
) -> CoverageResult:
    """Check that every selected ECS has an active image imsflow made, younger than the maximum age.

    Failed (``CoverageGapError``, naming the ECSs) when any has none; one ``imsflow.coverage.gap`` event per
    such ECS; the ``image-coverage`` table lists every ECS. Reads only: it stops, starts and deletes nothing.
    """
    return await ending_cleanly(_check_image_coverage(params, credentials_block))


async def _check_image_coverage(params: CoverageParams, credentials_block: str | None) -> CoverageResult:
    logger = get_run_logger()
    max_age = parse_age(params.max_age, "max_age")
    async with credentials_from_block(credentials_block):
        token = await flow_token()
        selection = await select_servers(params.fleet(), token, datetime.now(UTC).date())
        images = await list_imsflow_images([], token)
    servers = [SelectedEcs(instance_id=t.instance_id, name=t.server_name) for t in selection.targets]
    servers += [
        SelectedEcs(instance_id=m.instance_id, name=m.server_name, found=False, error=m.error)
        for m in selection.missing
    ]
    rows = await check_coverage(servers, images, max_age)
    result = CoverageResult(
        rows=rows, max_age=params.max_age, selection=params.selection(), checked_at=datetime.now(UTC)
    )
    await acreate_table_artifact(table=table(result), key="image-coverage", description=result.summary)
    for gap in result.gaps:
        emit_coverage_gap(
            instance_id=gap.instance_id,
            server_name=gap.server_name,
            reason=gap.reason,
            max_age=params.max_age,
            image_id=gap.image_id,
            image_name=gap.image_name,
            age_seconds=gap.age_seconds,
        )
    if result.gaps or not result.rows:
        logger.error(result.summary)
        raise CoverageGapError(result.summary, gaps=[g.instance_id for g in result.gaps], result=result)
    logger.info(result.summary)
    return Completed(message=result.summary, data=result)  # type: ignore[return-value]


if __name__ == "__main__":
    import asyncio

    import typer

    def main(
        tag: list[str] | None = None, name_contains: str | None = None, max_age: str = DEFAULT_MAX_AGE
    ) -> None:
        params = CoverageParams(tags=tag or [], name_contains=name_contains, max_age=max_age)
        print(asyncio.run(check_image_coverage(params)).summary)

    typer.run(main)


__all__ = ["CoverageParams", "CoverageResult", "check_image_coverage", "table"]
