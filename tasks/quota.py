"""Step: does a fleet's batch of new images fit the project's private-image quota?

Asked before the first submission, so a fleet too big for the quota stops with one clear line instead of
failing the images past the quota one by one with ``IMG.0015`` after the fact. Only *new* images count: a
request whose image exists already (it carries the request's tag) or whose submission is recorded would be
adopted or resumed, not made again.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

import runtime
from imsflow.models import IamToken, ImageListQuery
from runtime.auth import client_for
from runtime.records import SUBMISSIONS
from runtime.retry import transient_retries
from tasks.image import REQUEST_TAG


class QuotaFit(BaseModel):
    """The image quota against the new images a fleet would make."""

    used: int
    total: int
    #: Requests whose image would be made now (no image with their tag, no recorded submission).
    new: list[str]
    #: Images a new request makes when more than one (an image set: 1 + its data disks); else 1.
    images: dict[str, int] = Field(default_factory=dict)

    def images_of(self, key: str) -> int:
        """How many images request ``key`` makes."""
        return self.images.get(key, 1)

    @property
    def new_images(self) -> int:
        """The images the new requests make (a set counts each of its images)."""
        return sum(self.images_of(k) for k in self.new)

    @property
    def room(self) -> int:
        return max(self.total - self.used, 0)

    @property
    def fits(self) -> bool:
        return self.new_images <= self.room

    def line(self) -> str:
        """``image quota: 950 of 1000 used, room for 50; this fleet makes 120 new images``."""
        n = self.new_images
        return (
            f"image quota: {self.used} of {self.total} used, room for {self.room}; "
            f"this fleet makes {n} new image{'' if n == 1 else 's'}"
        )


@task(name="check-image-quota", cache_policy=NO_CACHE, **transient_retries())
async def check_image_quota(
    keys: list[str], token: IamToken | None, sizes: list[int] | None = None
) -> QuotaFit:
    """Count the requests among ``keys`` that would make a new image, and read the image quota.

    ``sizes``: the images each request makes (1 + its data disks for an image set; 1 each when None).
    """
    async with client_for(token) as client:
        quota = (await client.ims.get_quota()).get("image")
        made: set[str] = set()
        async for image in client.ims.iter_images(ImageListQuery(imagetype="private")):
            key = image.tag_map.get(REQUEST_TAG)
            if key is not None:
                made.add(key)
    new = [k for k in keys if k not in made and await SUBMISSIONS.get(k) is None]
    counts = dict(zip(keys, sizes, strict=True)) if sizes is not None else {}
    images = {k: counts[k] for k in new if counts.get(k, 1) != 1}
    if quota is None:  # a cloud that does not say: nothing to compare with
        fit = QuotaFit(used=0, total=sum(counts.get(k, 1) for k in new), new=new, images=images)
    else:
        fit = QuotaFit(used=quota.used, total=quota.quota, new=new, images=images)
    runtime.report("fleet:quota", fit.line())
    return fit


__all__ = ["QuotaFit", "check_image_quota"]
