"""Tell someone when an image could not be made: an automation on ``imsflow.image.failed`` calls a webhook.

``imsflow notify --webhook-url URL`` (or :func:`ensure_failure_webhook`) saves the URL in a Prefect
``Webhook`` block (its URL is a secret: Slack and Teams URLs carry their token) and creates the automation
that POSTs a small JSON document to it for every failed create-image run. Running it again replaces both,
so it is safe to re-run when the URL changes. The automation runs on the Prefect server: the server
must be able to reach the URL.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from runtime.events import IMAGE_FAILED

WEBHOOK_BLOCK = "imsflow-failure-webhook"
AUTOMATION = "imsflow: notify on failed image"

#: Jinja over the triggering event, rendered by the Prefect server.
PAYLOAD = """{
  "text": "imsflow: no image of ECS {{ event.resource.id | replace('imsflow.ecs.', '') }}",
  "event": "{{ event.event }}",
  "ecs": "{{ event.resource.id | replace('imsflow.ecs.', '') }}",
  "image_name": {{ event.payload.image_name | tojson }},
  "reason": {{ event.payload.reason | tojson }},
  "flow_run": "{{ event.resource_in_role['flow-run'].name if event.resource_in_role['flow-run'] else '' }}",
  "occurred": "{{ event.occurred }}"
}"""


async def ensure_failure_webhook(url: str) -> UUID:
    """Create (or replace) the webhook block and the automation; return the automation's ID."""
    from prefect.automations import Automation
    from prefect.blocks.webhook import Webhook
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import EventTrigger, Posture

    webhook = Webhook(method="POST", url=url, headers={"Content-Type": "application/json"})
    block_id = await webhook.asave(WEBHOOK_BLOCK, overwrite=True)
    try:
        old = await Automation.aread(name=AUTOMATION)
    except ValueError:
        pass
    else:
        await old.adelete()
    automation = await Automation(
        name=AUTOMATION,
        description="POST to the imsflow-failure-webhook block when a create-image run ends with no image.",
        trigger=EventTrigger(
            expect={IMAGE_FAILED},
            match={"prefect.resource.id": "imsflow.ecs.*"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[CallWebhook(block_document_id=block_id, payload=PAYLOAD)],
    ).acreate()
    assert automation.id is not None
    return automation.id


__all__ = ["AUTOMATION", "PAYLOAD", "WEBHOOK_BLOCK", "ensure_failure_webhook"]
