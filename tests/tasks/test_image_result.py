"""``tasks.image.ImageResult``: what a finished request reports to the fleet's duration history."""

from __future__ import annotations

from tasks.image import ImageResult


def test_a_set_reports_each_job_s_duration_never_their_sum() -> None:
    # The fleet's next pollers expect each job to take about as long as one of these (flows/fleet.py,
    # DurationHistory): a set's two jobs run one after the other and are polled one at a time.
    image = ImageResult(
        image_id="i", job_id="j", name="n", status="active", job_seconds=10.0, data_job_seconds=12.0
    )
    assert image.job_durations == [10.0, 12.0]
    alone = ImageResult(image_id="i", job_id="j", name="n", status="active", job_seconds=10.0)
    assert alone.job_durations == [10.0]
    adopted = ImageResult(image_id="i", job_id=None, name="n", status="active")
    assert adopted.job_durations == []
