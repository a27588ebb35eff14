"""AK/SK end to end: a flow run with an access key pair only (no password, no project ID)."""

from __future__ import annotations

from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from tests.client.test_aksk import aksk_cloud, aksk_settings
from tests.support import PROJECT_ID, WEB_1, cloud_runtime


async def test_flow_with_aksk_only_looks_up_the_project_once() -> None:
    cloud = aksk_cloud()
    with cloud_runtime(cloud, **aksk_settings()) as settings:
        assert settings.auth_mode == "aksk"
        assert settings.password is None
        assert settings.project_id is None
        result = await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name="web-1-aksk"))
        assert isinstance(result, CreateImageResult)

    image = cloud.ims.images[result.image_id]
    assert image.status == "active"
    assert image.owner == PROJECT_ID
    assert len(cloud.ims.images) == 1
    stats = cloud.stats()
    assert stats.get("iam.create_token", 0) == 0, "AK/SK signs every request: no token, no password"
    # GET /v3/projects?name=eu-de once; the tasks after the first reuse the answer.
    assert stats["iam.list_projects"] == 1
