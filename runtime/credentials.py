"""Cloud credentials the Prefect way: a block, saved once on the server and named in a flow parameter.

``ImsflowCredentials`` is to imsflow what prefect-aws's ``AwsCredentials`` is to boto3. The secrets are
``SecretStr`` fields, so Prefect stores them encrypted and the UI masks them; a flow run only ever carries
the block's *name* as a parameter. Resolution order for a run: the named block when ``credentials_block``
is given, else ``IMSFLOW_*`` environment variables and ``.env``.

The block carries the identity (profile, region, endpoints, user or AK/SK, project). Operational knobs
(timeouts, polling, TLS verification, the result key) still come from ``IMSFLOW_*``: they belong to the
host that runs the flow, not to the account.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal, cast

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

import runtime
from imsflow.settings import ImsflowSettings
from imsflow.validation import BLOCK_NAME_PATTERN  # the block-name rule, re-exported

#: Settings fields that make up "who, where": always taken from the block, never mixed with the
#: environment, so a stray ``IMSFLOW_ACCESS_KEY`` cannot turn a password block into AK/SK signing.
IDENTITY_FIELDS = (
    "profile",
    "region",
    "iam_url",
    "ecs_url",
    "ims_url",
    "domain",
    "username",
    "password",
    "access_key",
    "secret_key",
    "security_token",
    "project_id",
)


class ImsflowCredentials(Block):
    """Credentials and endpoints for Huawei Cloud or Open Telekom Cloud (password or AK/SK)."""

    _block_type_name: ClassVar[str | None] = "imsflow Credentials"
    _block_type_slug: ClassVar[str | None] = "imsflow-credentials"
    _description: ClassVar[str | None] = (
        "Credentials and endpoints imsflow uses to reach IAM, ECS and IMS: an IAM user (domain, user name, "
        "password) or an AK/SK pair. Name the block in a flow run's `credentials_block` parameter."
    )

    profile: Literal["local", "huaweicloud", "otc"] = Field(
        default="otc",
        description="Which cloud: otc (Open Telekom Cloud), huaweicloud, or local (the emulator).",
    )
    region: str = Field(default="eu-de", description="Region, also the IAM project name (eu-de, eu-nl, ...).")
    iam_url: str | None = Field(default=None, title="IAM URL", description="IAM endpoint override.")
    ecs_url: str | None = Field(default=None, title="ECS URL", description="ECS endpoint override.")
    ims_url: str | None = Field(default=None, title="IMS URL", description="IMS endpoint override.")
    domain: str | None = Field(default=None, description="Account (domain) name, for password login.")
    username: str | None = Field(default=None, description="IAM user name, for password login.")
    password: SecretStr | None = Field(default=None, description="IAM user password.")
    access_key: str | None = Field(default=None, description="Access key (AK), for AK/SK request signing.")
    secret_key: SecretStr | None = Field(
        default=None, description="Secret key (SK), for AK/SK request signing."
    )
    security_token: SecretStr | None = Field(
        default=None, description="Security token of a temporary AK/SK, if the AK/SK is temporary."
    )
    project_id: str | None = Field(
        default=None, title="Project ID", description="Project ID; looked up from the region when empty."
    )

    def to_settings(self) -> ImsflowSettings:
        """Settings with this block's identity and the host's operational knobs (``IMSFLOW_*``)."""
        # Every identity field is passed, None included: init arguments win over the environment.
        values: dict[str, Any] = {name: getattr(self, name) for name in IDENTITY_FIELDS}
        return ImsflowSettings(**values)


async def load_settings(block_name: str) -> ImsflowSettings:
    """Load the named block from the Prefect API and turn it into settings."""
    # aload's decorator hides its return type from mypy.
    block = cast("ImsflowCredentials", await ImsflowCredentials.aload(block_name))
    return block.to_settings()


@contextlib.asynccontextmanager
async def credentials_from_block(block_name: str | None) -> AsyncIterator[ImsflowSettings]:
    """Make the tasks use the named block's settings for the duration (else leave the settings alone).

    No block is ``None`` or ``""`` (what a flow's ``credentials_block`` parameter holds when none is named).

    ``runtime.use_runtime`` is process-wide, which is what a flow run needs: its tasks run in the same
    process (a served or worker-started run gets a process of its own). Two flows with different blocks in one
    process at the same time would share whichever settings came last; nothing in imsflow does that.
    """
    if not block_name:
        yield runtime.settings()
        return
    settings = await load_settings(block_name)
    with runtime.use_runtime(settings_factory=lambda: settings, settings_source=block_source(block_name)):
        yield settings


def block_source(block_name: str) -> runtime.SettingsSource:
    """Where a block's settings came from, for errors that tell the user what to fix."""
    return runtime.SettingsSource(
        label=f"credentials block '{block_name}'",
        remedy=f"fix the password in the block (Prefect UI: Blocks → {block_name}), then run again",
    )


async def register_blocks() -> list[str]:
    """Register imsflow's block types with the Prefect API (idempotent); return their slugs."""
    await ImsflowCredentials.aregister_type_and_schema()
    return [ImsflowCredentials.get_block_type_slug()]


__all__ = [
    "BLOCK_NAME_PATTERN",
    "IDENTITY_FIELDS",
    "ImsflowCredentials",
    "block_source",
    "credentials_from_block",
    "load_settings",
    "register_blocks",
]
