"""Run a LocalCloud over real HTTP with uvicorn: blocking (:func:`serve`), in a thread, or as a process."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from localcloud.cloud import LocalCloud
from localcloud.seed import DEMO_SEED_PATH, load_seed


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_exposed(host: str) -> None:
    """The local cloud has fake credentials and test endpoints: say so loudly when it leaves loopback."""
    if is_loopback(host):
        return
    bar = "!" * 78
    print(
        f"{bar}\n"
        f"!! WARNING: localcloud is binding {host}, which is NOT a loopback address.\n"
        "!! It is an unauthenticated test emulator with well-known demo credentials.\n"
        "!! Anyone who can reach this address can use it. Bind 127.0.0.1 unless you mean it.\n"
        f"{bar}",
        file=sys.stderr,
        flush=True,
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _config(cloud: LocalCloud, log_level: str, access_log: bool) -> uvicorn.Config:
    return uvicorn.Config(cloud.app, log_level=log_level, access_log=access_log, lifespan="off")


def serve(
    cloud: LocalCloud,
    host: str = "127.0.0.1",
    port: int = 8780,
    *,
    log_level: str = "warning",
    access_log: bool = False,
    label: str | None = None,
) -> None:
    """Serve ``cloud`` until interrupted (blocking). Access logs are off unless asked for."""
    warn_if_exposed(host)
    sock = _bind(host, port)
    suffix = f" ({label})" if label else ""
    print(f"localcloud listening on {_url(host, sock.getsockname()[1])}{suffix}", flush=True)
    server = uvicorn.Server(_config(cloud, log_level, access_log))
    server.run(sockets=[sock])


@dataclass
class ServerHandle:
    """A local cloud served from a background thread."""

    url: str
    host: str
    port: int
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    cloud: LocalCloud,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    timeout: float = 10.0,
    log_level: str = "warning",
) -> ServerHandle:
    """Serve ``cloud`` from a daemon thread; returns once the server accepts connections.

    ``port=0`` picks a free port; ``handle.url`` says which.
    """
    warn_if_exposed(host)
    sock = _bind(host, port)
    actual = sock.getsockname()[1]
    server = uvicorn.Server(_config(cloud, log_level, access_log=False))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"localcloud:{actual}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout
    # Waiting on uvicorn's own flag, then proving it with a real connection.
    while time.monotonic() < deadline:
        if server.started:
            try:
                with socket.create_connection((host, actual), timeout=1.0):
                    break
            except OSError:
                pass
        if not thread.is_alive():
            raise RuntimeError("localcloud server thread died while starting")
        time.sleep(0.01)
    else:
        server.should_exit = True
        raise TimeoutError(f"localcloud did not start within {timeout} s")
    return ServerHandle(_url(host, actual), host, actual, server, thread)


@contextlib.contextmanager
def start_process(seed: Mapping[str, Any], *, timeout: float = 30.0) -> Iterator[str]:
    """``python -m localcloud`` with ``seed`` on a free 127.0.0.1 port (a real clock, a process of its own);
    yields its base URL once it listens, and kills it afterwards: nothing of the cloud's outlives the caller,
    and a request a delay fault holds would keep a graceful stop waiting."""
    with tempfile.TemporaryDirectory(prefix="localcloud-") as tmp:
        seed_file = Path(tmp) / "seed.json"
        seed_file.write_text(json.dumps(seed))
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            [sys.executable, "-m", "localcloud", "--port", "0", "--seed", str(seed_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            # Its first line names the port it bound ("localcloud listening on URL ..."), once it listens.
            assert proc.stdout is not None
            readable, _, _ = select.select([proc.stdout], [], [], timeout)
            line = proc.stdout.readline() if readable else ""
            if "listening on " not in line:
                raise RuntimeError(f"the local cloud did not start within {timeout:.0f} s: {line!r}")
            yield line.split("listening on ", 1)[1].split()[0]
        finally:
            proc.kill()
            proc.wait(10)


def main(host: str = "127.0.0.1", port: int = 8780, seed_path: str | Path | None = None) -> None:
    """Entry point for ``python -m localcloud`` and ``imsflow cloud``: the demo seed unless told otherwise."""
    seed = load_seed(seed_path or DEMO_SEED_PATH)
    label = f"seed {seed_path}" if seed_path else "demo seed"
    serve(LocalCloud(seed), host=host, port=port, label=label)


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcloud", description="Run the local IAM/ECS/IMS cloud."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8780, help="port (default 8780; 0 = any free port)")
    parser.add_argument("--seed", default=None, help="seed file, YAML or JSON (default: the demo seed)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        main(args.host, args.port, args.seed)
    return 0
