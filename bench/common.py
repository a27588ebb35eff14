"""What the benchmarks share: a local cloud served as a process, seeds, settings, machine facts."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PROJECT_ID = "0123456789abcdef0123456789abcdef"
PASSWORD = "bench-Passw0rd"


def server_id(i: int) -> str:
    return f"b0000000-0000-4000-8000-{i:012d}"


def seed(n_servers: int, job_seconds: float, **extra: Any) -> dict[str, Any]:
    """``n_servers`` stopped ECSs; image jobs of ``job_seconds`` in total (1 s INIT + the rest RUNNING)."""
    data: dict[str, Any] = {
        "domains": [
            {
                "name": "bench",
                "users": [{"name": "bench", "password": PASSWORD}],
                "projects": [{"id": PROJECT_ID, "name": "eu-de"}],
            }
        ],
        "servers": [
            {
                "id": server_id(i),
                "name": f"node-{i:04d}",
                "project": "eu-de",
                "status": "SHUTOFF",
                "tags": ["fleet=bench"],
            }
            for i in range(n_servers)
        ],
        "timing": {"image_job_seconds": max(job_seconds - 1.0, 0.0), "job_init_seconds": 1.0},
        "limits": {"image_quota": max(50, 2 * n_servers)},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def local_cloud_process(data: dict[str, Any]) -> Iterator[str]:
    """``python -m localcloud`` on a free port with ``data`` as its seed; yields the base URL."""
    from localcloud.server import start_process

    with start_process(data) as url:
        yield url


def stats(url: str) -> dict[str, int]:
    data: dict[str, int] = httpx.get(f"{url}/_local/stats", timeout=10).json()
    return data


def imsflow_env(url: str, **extra: str) -> dict[str, str]:
    """Environment for an imsflow process against the local cloud at ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMSFLOW_")}
    env.update(
        IMSFLOW_PROFILE="local",
        IMSFLOW_IAM_URL=url,
        IMSFLOW_ECS_URL=url,
        IMSFLOW_IMS_URL=url,
        IMSFLOW_DOMAIN="bench",
        IMSFLOW_USERNAME="bench",
        IMSFLOW_PASSWORD=PASSWORD,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_LOGGING_SERVER_LEVEL="CRITICAL",
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE="100",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def machine() -> dict[str, str]:
    import importlib.metadata

    return {
        "nproc": str(os.cpu_count()),
        "python": platform.python_version(),
        "prefect": importlib.metadata.version("prefect"),
        "platform": platform.platform(terse=True),
        "loadavg": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def emit(result: dict[str, Any]) -> None:
    """A bench script's answer: one JSON line, last on stdout."""
    print("BENCH-RESULT " + json.dumps(result), flush=True)
