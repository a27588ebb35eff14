"""The Prefect UI, driven in headless Chromium: custom runs of the create-image deployment from its form, one
per image kind (a system image; a system-and-data set; a full-ECS image into a CBR vault), in one session.

Needs Debian's ``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run`` installs it) and the
``playwright`` package; the browser that playwright would download is never used. Set
``UPDATE_UI_SCREENSHOT=1`` to refresh ``docs/ui-run.png`` (the README's screenshot).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import (
    APP_1,
    CACHE_1,
    DB_1,
    DEMO_PASSWORD,
    ROOT,
    VAULT,
    WEB_1,
    Stack,
    cloud_token,
    private_images,
)

CHROMIUM = Path("/usr/bin/chromium")
# Playwright passes the usual headless flags itself; dev-shm is passed explicitly because Debian's wrapper
# script can drop it (browser-notes.md).
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic"]
STEPS = ("get-token", "check-ecs-stopped", "submit-image", "poll-job")
NO_SUCH_ECS = "6f1c2d7e-0000-4000-8000-0000000000ff"

PROJECT_ID = "0123456789abcdef0123456789abcdef"

try:
    from playwright.sync_api import Page, Response, expect, sync_playwright
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
    pytest.mark.skipif(
        sync_playwright is None, reason="needs the playwright package (pip install -e '.[test]')"
    ),
]


#: Prefect's SQLite server waits up to 60 s for the database lock before it answers a write (its
#: ``busy_timeout``), and the stack's runs write all the time: on a loaded machine, a Submit can take that
#: long. A full run on a fresh machine once saw no answer within the page's 30 s default; its cause was not
#: caught, so a timeout lists the page's last API calls (:class:`ApiCalls`).
SUBMIT_TIMEOUT_MS = 90_000


class ApiCalls:
    """The page's last calls to Prefect's API, to say what the UI was waiting on when a step times out."""

    def __init__(self, page: Page, base: str, keep: int = 20) -> None:
        self._api = base + "/api/"
        self.lines: deque[str] = deque(maxlen=keep)
        page.on("request", lambda r: self._add(f"> {r.method}", r.url))
        page.on("response", lambda r: self._add(f"< {r.status} {r.request.method}", r.url))
        page.on("requestfailed", lambda r: self._add(f"x {r.failure} {r.method}", r.url))

    def _add(self, what: str, url: str) -> None:
        if url.startswith(self._api):
            self.lines.append(f"{time.strftime('%H:%M:%S')} {what} /api/{url.removeprefix(self._api)}")

    def __str__(self) -> str:
        return "\n".join(self.lines) or "(none)"


def _submit(page: Page, calls: ApiCalls) -> Response:
    """Press Submit until the run is created (``create_flow_run``'s answer)."""
    for _attempt in range(3):
        try:
            with page.expect_response(
                lambda r: r.url.endswith("/create_flow_run") and r.request.method == "POST",
                timeout=SUBMIT_TIMEOUT_MS,
            ) as created:
                page.get_by_role("button", name="Submit").click()
        except PlaywrightTimeoutError:
            waited = SUBMIT_TIMEOUT_MS / 1000
            raise AssertionError(
                f"Submit created no run in {waited:.0f} s; the UI's last API calls:\n{calls}"
            ) from None
        # A busy SQLite server answers 503 and creates nothing; a user would press Submit again.
        if created.value.status != 503:
            break
        page.wait_for_timeout(1000)
    assert created.value.status == 201, created.value.text()
    return created.value


def _kind_run(
    page: Page, calls: ApiCalls, stack: Stack, deployment: str, instance_id: str, name: str, kind: str
) -> Any:
    """A custom run from the form with *Image kind* chosen (and, for full-ecs, the CBR vault ID)."""
    page.goto(f"{stack.base}/v2/deployments/deployment/{deployment}/run?parameters={{}}")
    page.get_by_role("textbox", name="Instance ID", exact=True).fill(instance_id)
    page.get_by_role("textbox", name="Image name", exact=True).fill(name)
    page.get_by_role("button", name="Select Image kind").click()
    page.get_by_role("option", name=kind, exact=True).click()
    expect(page.get_by_role("button", name="Select Image kind")).to_have_text(kind)
    if kind == "full-ecs":
        page.get_by_role("textbox", name="CBR vault ID (Optional)").fill(VAULT)
    run = _submit(page, calls).json()
    params = run["parameters"]["params"]
    assert (params["instance_id"], params["name"], params["kind"]) == (instance_id, name, kind)
    assert params.get("vault_id") == (VAULT if kind == "full-ecs" else None)
    return run


def test_custom_run_from_the_ui_completes_with_four_steps(stack: Stack, tmp_path: Path) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()
    deployment = stack.deployment("create-image-from-ecs", "create-image")
    image_name = f"web-1-ui-{int(time.time())}"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        timings["browser launched"] = time.monotonic() - started
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        # The V2 UI loads an analytics SDK from the internet even with analytics off: keep it offline.
        context.route(lambda url: not url.startswith(stack.base), lambda route: route.abort())
        page = context.new_page()
        page.set_default_timeout(30_000)
        calls = ApiCalls(page, stack.base)

        page.goto(stack.base + "/")
        expect(page).to_have_url(re.compile(r"/v2/"))
        page.get_by_role("link", name="Deployments", exact=True).first.click()
        page.get_by_role("link", name="create-image", exact=True).click()
        expect(page).to_have_url(re.compile(f"/v2/deployments/deployment/{deployment['id']}"))
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Custom run").click()

        # The form is the pydantic model: titles as labels, descriptions underneath.
        page.get_by_role("textbox", name="Instance ID", exact=True).fill(WEB_1)
        page.get_by_role("textbox", name="Image name", exact=True).fill(image_name)
        expect(page.get_by_text("ID (UUID) of the ECS whose system disk becomes the image.")).to_be_visible()
        timings["form filled"] = time.monotonic() - started

        run = _submit(page, calls).json()
        assert run["parameters"]["params"]["instance_id"] == WEB_1
        assert run["parameters"]["params"]["name"] == image_name
        submitted = time.monotonic()
        # While it runs, a second create-image run for another ECS: exclusive per ECS, not per deployment,
        # so it is not cancelled (it ran side by side; the UI shows it Completed below).
        other = stack.post(
            f"/deployments/{deployment['id']}/create_flow_run",
            {
                "parameters": {
                    "params": {
                        "instance_id": DB_1,
                        "name": f"db-1-ui-{int(time.time())}",
                        "stop_if_running": True,
                    }
                }
            },
        )
        assert other.status_code == 201, other.text
        other_run = other.json()
        # And one that must fail: an ECS that does not exist. Its page must say why, in one line.
        failing = stack.post(
            f"/deployments/{deployment['id']}/create_flow_run",
            {"parameters": {"params": {"instance_id": NO_SUCH_ECS, "name": f"gone-ui-{int(time.time())}"}}},
        )
        assert failing.status_code == 201, failing.text
        failing_run = failing.json()
        # The other kinds from the same form, each on an ECS of its own (they run side by side): a
        # system-and-data set of app-1 (stopped, two data disks) and a full-ECS image of cache-1 (running).
        stamp = int(time.time())
        kinds = {
            "system-and-data": (APP_1, f"app-1-set-{stamp}"),
            "full-ecs": (CACHE_1, f"cache-1-full-{stamp}"),
        }
        kind_runs = {
            kind: _kind_run(page, calls, stack, deployment["id"], instance_id, name, kind)
            for kind, (instance_id, name) in kinds.items()
        }
        timings["kind runs submitted"] = time.monotonic() - submitted

        # Wait through the API on a blank page: a run page left open re-renders its live state in software
        # (no GPU here) and made Chromium half of this test's CPU. Each page below still has to say it.
        page.goto("about:blank")
        for waited in (run, other_run, *kind_runs.values(), failing_run):
            stack.wait_for_run(waited["id"], timeout=90)
        timings["submit → all final"] = time.monotonic() - submitted

        page.goto(f"{stack.base}/v2/runs/flow-run/{run['id']}")
        main = page.get_by_role("main")
        expect(main.get_by_text("Completed", exact=True).first).to_be_visible()

        page.get_by_role("tab", name="Task Runs").click()
        panel = page.get_by_role("tabpanel")
        for step in STEPS:
            expect(panel.get_by_role("link", name=re.compile(f"^{step}"))).to_be_visible()
        page.get_by_role("tab", name="Artifacts").click()
        expect(page.get_by_role("tabpanel").get_by_text("image-summary").first).to_be_visible()

        page.get_by_role("tab", name="Task Runs").click()
        expect(panel.get_by_role("link", name=re.compile("^poll-job"))).to_be_visible()
        shot = tmp_path / "ui-run.png"
        page.screenshot(path=str(shot))

        page.goto(f"{stack.base}/v2/runs/flow-run/{other_run['id']}")
        expect(page.get_by_role("main").get_by_text("Completed", exact=True).first).to_be_visible()

        for kind_run in kind_runs.values():
            page.goto(f"{stack.base}/v2/runs/flow-run/{kind_run['id']}")
            expect(page.get_by_role("main").get_by_text("Completed", exact=True).first).to_be_visible()
        page.get_by_role("tab", name="Task Runs").click()  # the full-ECS run: one request, ECS as it is
        panel = page.get_by_role("tabpanel")
        for step in ("check-ecs-ready", "submit-image", "poll-job"):
            expect(panel.get_by_role("link", name=re.compile(f"^{step}"))).to_be_visible()

        page.goto(f"{stack.base}/v2/runs/flow-run/{failing_run['id']}")
        main = page.get_by_role("main")
        expect(main.get_by_text("Failed", exact=True).first).to_be_visible(timeout=30_000)
        # The reason in one line: what failed, the cloud's code and request ID, what to do. Prefect 3.9.1's
        # run header shows only the state badge; the state message is the Details tab's "State Message"
        # (and the first ERROR line of the Logs tab, open by default, says the same).
        page.get_by_role("tab", name="Details").click()
        detail = page.get_by_role("tabpanel")
        expect(detail.get_by_text("State Message", exact=True)).to_be_visible()
        reason = detail.get_by_text(
            re.compile(r"^EcsNotFoundError: HTTP 404 Ecs\.0114: .* — to do: Check the ECS id")
        )
        expect(reason).to_be_visible()
        page.screenshot(path=str(tmp_path / "ui-failed-run.png"))
        browser.close()
    timings["whole UI path"] = time.monotonic() - started

    # The same run through the API: four steps, all completed (the token may come from the cache).
    final = stack.wait_for_run(run["id"], timeout=10)
    assert final["state_type"] == "COMPLETED"
    task_runs = stack.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}}).json()
    names = sorted(t["name"].split("[")[0] for t in task_runs)
    assert names == sorted(STEPS)
    assert {t["state_type"] for t in task_runs} == {"COMPLETED"}
    assert stack.wait_for_run(other_run["id"], timeout=10)["state_type"] == "COMPLETED"
    failed = stack.flow_run(failing_run["id"])
    assert failed["state_type"] == "FAILED"
    message = failed["state"]["message"]
    assert "\n" not in message
    assert message.startswith("EcsNotFoundError: HTTP 404 Ecs.0114"), message
    assert "to do:" in message, message

    # What each kind's run made, as the cloud lists it: the documented images, each member once.
    token = cloud_token(stack.cloud_url, "demo", DEMO_PASSWORD, PROJECT_ID)
    images = private_images(stack.cloud_url, token)
    for kind, (_ecs, name) in kinds.items():
        assert stack.flow_run(kind_runs[kind]["id"])["state_type"] == "COMPLETED"
        made = sorted((i["name"], i["status"]) for i in images if i["name"].startswith(name))
        if kind == "system-and-data":  # the system image, then one per data disk, named after its device
            assert made == [(name, "active"), (f"{name}-vdb", "active"), (f"{name}-vdc", "active")]
            data = [i for i in images if i["name"] in (f"{name}-vdb", f"{name}-vdc")]
            assert {i["virtual_env_type"] for i in data} == {"DataImage"}
        else:  # one full-ECS image of the system disk and the data disk together
            assert made == [(name, "active")]
            whole = next(i for i in images if i["name"] == name)
            assert str(whole["__whole_image"]).lower() == "true"

    if os.environ.get("UPDATE_UI_SCREENSHOT"):
        shutil.copyfile(shot, ROOT / "docs" / "ui-run.png")
    print("\nbrowser test timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print("stack timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in stack.timings.items()))
