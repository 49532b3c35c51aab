"""The embedded models, loaded for real from their PyPI packages, answer through POST /chat."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ROOT, Server, ServerFactory, free_port
from helpers import Watcher, post_chat, until
from streamchat.llm.base import ChatTurn
from streamchat.llm.local_models import DEFAULT_MODEL, KNOWN, UNPACK_LOCK, LocalModelError, resolve
from streamchat.llm.local_provider import fit

PROMPTS = [
    "What is the capital of France?",
    "What are three good reasons to learn Python? Answer with a markdown list",
    "Show me a Python function that reverses a string, in a code block",
]
#: Replies of the base model are sampled greedily (STREAMCHAT_TEMPERATURE=0): sampled, it sometimes
#: ends its turn at once, and an empty reply ends as an error by design.

#: What a reply must never contain: the turn markers of chat templates and of the transcript prompt.
LEAKS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<start_of_turn>", "<end_of_turn>", "User:", "Assistant:")


def local(servers: ServerFactory, **env: str) -> Server:
    """A server on the embedded model, with short replies."""
    return servers.start_local(**{"STREAMCHAT_MAX_TOKENS": "160", **env})


async def ask(server: Server, prompt: str, cid: str | None = None) -> dict[str, Any]:
    """POST a message and return the reply as it ended (the watcher sees every change)."""
    cid = cid or str(uuid.uuid4())
    async with Watcher(server.ws_url, cid) as watcher:
        accepted = await post_chat(server.url, prompt, cid)
        final = await watcher.until_finished(accepted["assistantMessageId"], timeout=180)
    return final


def assert_answered(final: dict[str, Any]) -> None:
    assert final["status"] == "completed", final
    assert final["message"].strip(), final
    leaked = [marker for marker in LEAKS if marker in final["message"]]
    assert not leaked, f"the reply contains turn markers {leaked}: {final['message']!r}"
    # Counted by the model's tokenizer: a token is at least one byte and, in English, rarely over ten.
    usage = final["usage"]
    assert len(final["message"].encode()) / 10 <= usage["completionTokens"] <= len(final["message"].encode()), usage
    assert usage["promptTokens"] >= 8, usage  # a system prompt and a question
    assert 0 < usage["timeToFirstTokenMs"] <= usage["durationMs"], usage


def serving(server: Server) -> dict[str, Any]:
    return dict(httpx.get(f"{server.url}/api/models").json()["serving"])


async def test_the_default_model_answers_fixed_prompts(servers: ServerFactory) -> None:
    server = local(servers)
    for prompt in PROMPTS:
        assert_answered(await ask(server, prompt))
    cid = str(uuid.uuid4())
    assert_answered(await ask(server, "My name is Ada. Please remember it.", cid))
    assert_answered(await ask(server, "What is my name?", cid))
    assert serving(server) == {"provider": "local", "model": DEFAULT_MODEL, "status": "ready", "detail": "ok"}
    assert '"prompt":"template"' in server.logs()


async def test_the_base_model_by_name_uses_the_transcript(servers: ServerFactory) -> None:
    server = local(servers, STREAMCHAT_LOCAL_MODEL="gemma3-270m", STREAMCHAT_TEMPERATURE="0")
    assert_answered(await ask(server, PROMPTS[0]))
    assert serving(server)["model"] == "gemma3-270m"
    assert '"prompt":"transcript"' in server.logs()


def gguf_without_template(source: Path, target: Path) -> Path:
    """A copy of a GGUF file with its chat template removed, made by gguf-py's own metadata tool."""
    subprocess.run([str(Path(sys.executable).with_name("gguf-new-metadata")), "--remove-metadata",
                    "tokenizer.chat_template", "--force", str(source), str(target)], check=True, capture_output=True)
    return target


async def test_a_gguf_path_uses_its_template_when_it_has_one(servers: ServerFactory, tmp_path: Path) -> None:
    path = KNOWN[DEFAULT_MODEL].locate(tmp_path)
    with_template = local(servers, STREAMCHAT_LOCAL_MODEL=str(path))
    assert_answered(await ask(with_template, PROMPTS[0]))
    assert serving(with_template)["model"] == str(path.resolve())
    assert '"prompt":"template"' in with_template.logs()

    bare = gguf_without_template(path, tmp_path / "no-template.gguf")
    without = local(servers, STREAMCHAT_LOCAL_MODEL=str(bare), STREAMCHAT_TEMPERATURE="0")
    assert_answered(await ask(without, PROMPTS[0]))
    assert '"prompt":"transcript"' in without.logs()


async def test_the_server_answers_while_the_model_is_being_prepared(servers: ServerFactory, tmp_path: Path) -> None:
    """Another process holds the unpack lock, so the model stays 'unpacking' for as long as the test
    wants: the server is up, says what it waits for, accepts a message, and streams it afterwards."""
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    with (models / UNPACK_LOCK).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = local(servers, STREAMCHAT_LOCAL_MODEL="gemma3-270m", STREAMCHAT_TEMPERATURE="0")
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["model"] == "unpacking gemma3-270m"
        assert serving(server)["status"] == "loading"
        cid = str(uuid.uuid4())
        watcher = await Watcher(server.ws_url, cid).__aenter__()
        accepted = await post_chat(server.url, PROMPTS[0], cid)

        async def reply_started() -> bool:
            history = httpx.get(f"{server.url}/api/conversations/{cid}").json()["messages"]
            return len(history) == 2 and history[1]["status"] != "created"

        await until(reply_started, "the reply's handler running")
        # Nothing can come while the lock is held: the reply streams nothing, it waits for the model.
        history = httpx.get(f"{server.url}/api/conversations/{cid}").json()["messages"]
        waiting = [(m["from"], m["status"], m["message"]) for m in history]
        assert waiting == [("user", "completed", PROMPTS[0]), ("assistant", "streaming", "")], "it waits for the model"
    try:
        final = await watcher.until_finished(accepted["assistantMessageId"], timeout=180)
    finally:
        await watcher.__aexit__()
    assert_answered(final)
    assert httpx.get(f"{server.url}/readyz").json()["checks"]["model"] == "ok"
    assert (models / "gemma-3-270m-q4_k_m.gguf").exists() and not list(models.glob("*.partial"))


@pytest.mark.parametrize(("value", "expected"), [
    ("tinyllama-1b", "no such model; choose smollm2-135m-instruct or gemma3-270m"),
    ("/nowhere/model.gguf", "no such file"),
    ("{not_gguf}", "not a GGUF file"),
    ("{directory}", "is a directory"),
])
def test_a_bad_local_model_stops_the_start_naming_the_variable(tmp_path: Path, value: str, expected: str) -> None:
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_text("<html>this is a download error page, not a model</html>")
    value = value.format(not_gguf=not_gguf, directory=tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMCHAT_", "OPENAI_"))}
    env.update(STREAMCHAT_LOCAL_MODEL=value, STREAMCHAT_DATA_DIR=str(tmp_path / "data"),
               STREAMCHAT_STATE_URL=f"sqlite:///{tmp_path / 'state.db'}")
    result = subprocess.run([sys.executable, "-m", "streamchat", "serve", "--port", str(free_port())], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert f"STREAMCHAT_LOCAL_MODEL={value}" in result.stderr.replace("'", ""), result.stderr
    assert expected in result.stderr, result.stderr


def test_resolve_accepts_the_names_and_gguf_files(tmp_path: Path) -> None:
    assert resolve(None).id == resolve("").id == DEFAULT_MODEL
    assert resolve("gemma3-270m").prompt == "transcript"
    copy = tmp_path / "model.bin"
    shutil.copy(KNOWN[DEFAULT_MODEL].locate(tmp_path), copy)
    assert (resolve(str(copy)).id, resolve(str(copy)).prompt) == (str(copy.resolve()), "auto")
    with pytest.raises(LocalModelError, match="STREAMCHAT_LOCAL_MODEL"):
        resolve("SmolLM2")


def test_fit_drops_the_oldest_turns_but_keeps_the_system_prompt_and_the_question() -> None:
    turns = [ChatTurn("system", "s"), *(ChatTurn("user" if i % 2 else "assistant", f"turn {i}") for i in range(6))]
    kept = fit(turns, lambda kept: 10 * len(kept), budget=35)
    assert kept == [turns[0], turns[-2], turns[-1]]
    assert fit(turns[:1] + turns[-1:], lambda kept: 1000, budget=1) == turns[:1] + turns[-1:]
