"""Child processes on loopback ports, for the tests and the benchmark: start one, wait for it, stop it.

Both start the same things (a streamchat server, the fake provider) and must tell a process that
died at start-up (its log says why) from one that is merely slow to listen.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it; a race with other starters is unlikely)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    """Until `url` answers below 500; fails at once, with the end of the log, if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s:\n{log.read_text()[-4000:]}")


def start_process(args: list[str], env: dict[str, str], log: Path, health: str, *, cwd: Path | None = None,
                  timeout: float = 60.0) -> subprocess.Popen[bytes]:
    """Start `args` with its output in `log` and return once `health` answers; killed if it never does."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        wait_http(health, process, log, timeout)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
    """Send `sig` and wait; a process still running after `timeout` is killed. Returns its exit status."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)
