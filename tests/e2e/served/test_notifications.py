"""A failed image run reaches a webhook: the flow's hook emits an event → automation → webhook → receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.stack import DB_1, Stack

pytestmark = pytest.mark.slow


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/imsflow"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        assert isinstance(self.server, Receiver)
        self.server.received.append({"path": self.path, "body": body.decode()})
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_failed_image_run_calls_the_webhook(stack: Stack, receiver: Receiver) -> None:
    for url in ("http://127.0.0.1:9/old-hook", receiver.url):  # set up, then again with the real URL
        setup = stack.run_cli("notify", "--webhook-url", url)
        assert setup.returncode == 0, setup.stderr
        assert url not in setup.stdout, "the webhook URL is a secret; it is not printed"
    automations = stack.post("/automations/filter", {}).json()
    assert [a["name"] for a in automations].count("imsflow: notify on failed image") == 1

    deployment = stack.deployment("create-image-from-ecs", "create-image")
    # db-1 is running and the run does not ask to stop it: the flow fails before submitting anything.
    run = stack.post(
        f"/deployments/{deployment['id']}/create_flow_run",
        {"parameters": {"params": {"instance_id": DB_1, "name": "db-1-will-fail"}}},
    ).json()
    final = stack.wait_for_run(run["id"], timeout=90)
    assert final["state_type"] == "FAILED"

    deadline = time.monotonic() + 30
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.2)
    assert receiver.received, "the webhook was not called"
    time.sleep(1)
    assert len(receiver.received) == 1, "one failed run, one call"
    call = receiver.received[0]
    assert call["path"] == "/hooks/imsflow"
    body = json.loads(call["body"])
    assert body["event"] == "imsflow.image.failed"
    assert body["ecs"] == DB_1
    assert body["image_name"] == "db-1-will-fail"
    assert "ACTIVE" in body["reason"]
    assert body["flow_run"] == final["name"]
