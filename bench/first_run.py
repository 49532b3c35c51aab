"""What a new user waits for: a fresh clone, `./scripts/serve`, and the first token of an answer in the page.

Clones this checkout (its committed HEAD) into a temporary folder, runs `./scripts/serve` there, and
drives Debian's Chromium through the page: open it, send a question, wait for the first text of the
answer. The wait is split into its parts from the set-up's own progress lines and the server's log:
venv + pip, the llama-cpp-python compile (or the install from the wheel cache), the model's unpack
and load, and page to first token.

    python -m bench.first_run                 # a second clone: this machine's wheel cache is used
    python -m bench.first_run --fresh-machine # an empty wheel cache and no pip cache: compiles

127.0.0.1 only; the clone is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT
from streamchat.testing.processes import free_port

CHROMIUM = os.environ.get("STREAMCHAT_CHROMIUM", "/usr/bin/chromium")
QUESTION = "What are three good reasons to learn Python? Answer with a markdown list"


def follow(process: subprocess.Popen[str], started: float, lines: list[tuple[float, str]]) -> None:
    """Keep every line of the set-up and server output with the second it arrived."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.append((time.monotonic() - started, line.rstrip()))


def first_at(lines: list[tuple[float, str]], pattern: str) -> float | None:
    return next((at for at, line in lines if re.search(pattern, line)), None)


def first_token_in_page(url: str) -> tuple[float, float]:
    """Seconds from opening the page to the first answer text, and to the finished answer."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        opened = time.monotonic()
        page.goto(url)
        page.fill("#input", QUESTION)
        page.press("#input", "Enter")
        page.wait_for_function("(document.querySelector('.message.assistant .body')?.innerText || '').trim()",
                               timeout=600_000)
        first = time.monotonic() - opened
        page.wait_for_selector(".message.assistant.completed", timeout=600_000)
        done = time.monotonic() - opened
        browser.close()
    return first, done


def measure(fresh_machine: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="streamchat-first-run-"))
    clone = workdir / "streamchat"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMCHAT_", "OPENAI_", "VIRTUAL_ENV"))}
    if fresh_machine:
        env.update(STREAMCHAT_WHEEL_CACHE=str(workdir / "wheel-cache"), PIP_NO_CACHE_DIR="1")
    port = free_port()
    started = time.monotonic()
    serve = subprocess.Popen(["./scripts/serve", "--port", str(port)], cwd=clone, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[tuple[float, str]] = []
    threading.Thread(target=follow, args=(serve, started, lines), daemon=True).start()
    try:
        while first_at(lines, r"streamchat: serving http") is None:
            if serve.poll() is not None:
                time.sleep(0.5)
                raise RuntimeError("./scripts/serve exited:\n" + "\n".join(line for _, line in lines[-40:]))
            time.sleep(0.1)
        listening = first_at(lines, r"streamchat: serving http")
        page_first, page_done = first_token_in_page(f"http://127.0.0.1:{port}/")
        total = time.monotonic() - started
    finally:
        serve.terminate()
        serve.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)
    compile_start = first_at(lines, r"compiling once for this machine|using the wheel built earlier")
    compile_end = first_at(lines, r"compiled llama-cpp-python|using the wheel built earlier")
    ready: dict[str, Any] = next((json.loads(line) for _, line in lines if '"local model ready"' in line), {})
    assert listening is not None and compile_start is not None and compile_end is not None
    return {
        "fresh_machine": fresh_machine,
        "venv_pip_and_start_s": round(listening - (compile_end - compile_start), 1),
        "llama_cpp_s": round(compile_end - compile_start, 1),
        "llama_cpp": "compiled" if fresh_machine else "installed from the wheel cache",
        "server_listening_s": round(listening, 1),
        "model_unpack_s": ready.get("unpackSeconds"), "model_load_s": ready.get("loadSeconds"),
        "page_to_first_token_s": round(page_first, 2), "page_to_finished_answer_s": round(page_done, 2),
        "clone_to_first_token_s": round(total - (page_done - page_first), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh-machine", action="store_true",
                        help="an empty wheel cache and no pip cache, as on a machine that never built it")
    args = parser.parse_args()
    result = measure(args.fresh_machine)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
