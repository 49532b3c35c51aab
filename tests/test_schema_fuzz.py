"""schemathesis against a real server's /openapi.json: no 5xx, and every response is one the schema documents.

Clients are generated from the schema, so an undocumented status or a body that does not match its
model is a bug just like a crash. The fuzzing runs the schemathesis CLI as CI would (every phase:
coverage, fuzzing, stateful) against a server open, with a user key and with an admin key.
(`schemathesis.pytest.from_fixture` cannot be used: it breaks on pytest 9.2, which has no `Node._nodeid`.)
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import FakeProvider, Server, ServerFactory

#: What the issue asks for: no 5xx, and status code, content type, headers and body as documented.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
USER_KEY = "fuzz-user-key"
ADMIN_KEY = "fuzz-admin-key"
#: Streams until the client leaves, so one call never ends: left out (tests/test_sse.py covers it).
SSE_PATH = "/api/conversations/{conversationId}/events"
STOP = "/api/conversations/{conversationId}/messages/{messageId}/stop"
REGENERATE = "/api/conversations/{conversationId}/messages/{messageId}/regenerate"


@dataclass(frozen=True)
class Target:
    """The server under test and the headers every request to it carries."""

    server: Server
    headers: dict[str, str]


@pytest.fixture(params=["open", "user-key", "admin-key"])
def target(request: pytest.FixtureRequest, servers: ServerFactory) -> Target:
    """A server of this test's own: its own database, so its data and rate limits touch no other test.

    With a user key the admin and Workbench routes answer 403, which the schema must document too.
    """
    if request.param == "open":
        return Target(servers.start(), {})
    server = servers.start(STREAMCHAT_API_KEYS=USER_KEY, STREAMCHAT_ADMIN_KEYS=ADMIN_KEY)
    key = USER_KEY if request.param == "user-key" else ADMIN_KEY
    return Target(server, {"Authorization": f"Bearer {key}"})


def test_fuzzing_the_openapi_schema_finds_no_5xx_and_no_undocumented_response(target: Target,
                                                                              tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{target.server.url}/openapi.json",
        "--checks", ",".join(check.__name__ for check in CHECKS),
        "--exclude-path", SSE_PATH,
        # Every operation is fuzzed in full without a key; with one, fewer cases (what a key changes is
        # who may do what, which the ownership tests cover case by case).
        "--max-examples", "20" if not target.headers else "5",
        "--request-timeout", "10",
        "--generation-database", "none",
        "--no-color",
    ]
    for name, value in target.headers.items():
        command += ["--header", f"{name}: {value}"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=100, check=False)
    report = f"{run.stdout[-20_000:]}{run.stderr[-4_000:]}\n--- server log ---\n{target.server.logs()[-4_000:]}"
    assert run.returncode == 0, f"schemathesis found problems:\n{report}"
    spec = httpx.get(f"{target.server.url}/openapi.json", headers=target.headers).json()
    operations = sum(len(methods) for path, methods in spec["paths"].items() if path != SSE_PATH)
    assert f"Tested: {operations}\n" in run.stdout, report  # every operation but the SSE one was reached


def validating_caller(target: Target) -> Callable[..., Any]:
    """`call(method, path, expected_status, **case_parts)`: one request built from the schema, its answer
    checked against it (status, content type, headers, body); the httpx-like response."""
    schema = schemathesis.openapi.from_url(f"{target.server.url}/openapi.json", headers=target.headers, timeout=10)

    def call(method: str, path: str, expected: int, **parts: Any) -> Any:
        case = schema[path][method].Case(**parts)
        response = case.call_and_validate(base_url=target.server.url, headers=target.headers, checks=CHECKS,
                                          timeout=10)
        assert response.status_code == expected, response.text
        return response

    return call


def test_stop_and_regenerate_of_a_real_reply_answer_as_documented(target: Target,
                                                                   fake_provider: FakeProvider) -> None:
    """Fuzzing never guesses a real message id, so stop and regenerate only ever 404 there: drive their
    successful and conflicting answers with a real reply, each one checked against the schema."""
    call = validating_caller(target)
    fake_provider.script(hold=True)  # the reply stays unfinished until released
    try:
        chat = call("POST", "/chat", 200, body={"message": "hello there"}).json()
        ids = {"conversationId": chat["conversationId"], "messageId": chat["assistantMessageId"]}
        assert call("POST", STOP, 202, path_parameters=ids).json()["status"] == "stopped"
        call("POST", STOP, 409, path_parameters=ids)
        again = call("POST", REGENERATE, 202, path_parameters=ids).json()
        assert again["userMessageId"] == chat["userMessageId"]
        call("POST", REGENERATE, 409, path_parameters={**ids, "messageId": chat["userMessageId"]})
        detail = call("GET", "/api/conversations/{conversationId}", 200, query={"all": "true"},
                      path_parameters={"conversationId": chat["conversationId"]}).json()
        assert [message["id"] for message in detail["messages"]] == [
            chat["userMessageId"], chat["assistantMessageId"], again["assistantMessageId"]]
    finally:
        fake_provider.release()


def test_managing_a_real_conversation_answers_as_documented(target: Target, fake_provider: FakeProvider) -> None:
    """Fuzzing never guesses a real conversation id either: rename, export in both formats, import of
    that export, usage, search and delete of a real conversation, each answer checked against the schema."""
    call = validating_caller(target)
    chat = call("POST", "/chat", 200, body={"message": "hello schema"}).json()
    one = {"conversationId": chat["conversationId"]}
    deadline = time.monotonic() + 30  # a bound on a hang
    while (detail := call("GET", "/api/conversations/{conversationId}", 200,
                          path_parameters=one).json())["messages"][-1]["status"] != "completed":
        assert time.monotonic() < deadline, f"the reply did not complete: {detail}"
        time.sleep(0.05)
    assert "usage" in detail["messages"][-1]
    call("PATCH", "/api/conversations/{conversationId}", 200, path_parameters=one, body={"title": "documented"})
    export = "/api/conversations/{conversationId}/export"
    document = call("GET", export, 200, path_parameters=one, query={"format": "json"}).json()
    markdown = call("GET", export, 200, path_parameters=one, query={"format": "markdown"})
    assert markdown.headers["content-type"][0].startswith("text/markdown")
    copy = call("POST", "/api/conversations/import", 201, body=document).json()
    assert copy["title"] == "documented"
    usage = call("GET", "/api/usage", 200, query={"since": "2000-01-01T00:00:00Z"}).json()
    assert sum(model["replies"] for model in usage["models"]) >= 1
    found = call("GET", "/api/conversations", 200, query={"q": "schema"}).json()["conversations"]
    assert {hit["conversationId"] for hit in found} >= {chat["conversationId"], copy["conversationId"]}
    call("DELETE", "/api/conversations/{conversationId}", 204, path_parameters=one)
    call("DELETE", "/api/conversations/{conversationId}", 404, path_parameters=one)
