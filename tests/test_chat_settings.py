"""Models and settings per conversation: a models file with two OpenAI-compatible endpoints, settings
given on a message or by PATCH (validated by name), merged over the model's params for every later
reply, and no silent truncation: no limit unless one is set, and a reply a limit cut says so in
every view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from conftest import FakeProvider, InProcessStarter, two_models_file
from helpers import InProcessServer, wait_for_status


def models_file(tmp_path: Path, fast: FakeProvider, smart: FakeProvider) -> Path:
    return two_models_file(tmp_path, fast, smart, "temperature = 0.5\nmax_tokens = 40")


async def send(server: InProcessServer, body: dict[str, Any]) -> dict[str, Any]:
    async with server.client() as client:
        answer = await client.post("/chat", json=body)
    assert answer.status_code == 200, answer.text
    sent: dict[str, Any] = answer.json()
    await wait_for_status(server, sent["conversationId"], sent["assistantMessageId"])
    return sent


async def item(server: InProcessServer, cid: str, item_id: str) -> dict[str, Any]:
    async with server.client() as client:
        body = (await client.get(f"/api/conversations/{cid}", params={"all": "true"})).json()
    return next(message for message in body["messages"] if message["id"] == item_id)


async def test_each_reply_comes_from_the_model_it_asked_for_with_its_params_under_the_conversations(
    in_process: InProcessStarter, fake_provider: FakeProvider, second_fake: FakeProvider, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAST_KEY", "sk-fast")
    server = await in_process(STREAMCHAT_MODELS_FILE=str(models_file(tmp_path, fake_provider, second_fake)))
    async with server.client() as client:
        listed = (await client.get("/api/models")).json()["models"]
        names = (await client.get("/v1/models")).json()["data"]
    assert [(model["name"], model["model"], model["default"]) for model in listed] == [
        ("fast", "fast-model", True), ("smart", "smart-model", False)]
    assert "sk-fast" not in str(listed) and "FAST_KEY" not in str(listed)
    assert [model["id"] for model in names] == ["fast", "smart"]

    fake_provider.script(tokens=["quick"])
    second_fake.script(tokens=["slow"])
    first = await send(server, {"message": "hi"})
    cid = first["conversationId"]
    reply = await item(server, cid, first["assistantMessageId"])
    assert (reply["model"], reply["message"], reply["finishReason"]) == ("fast", "quick", "stop")
    [request] = fake_provider.requests()
    assert (request["model"], request["temperature"], "max_tokens" in request) == ("fast-model", 0.3, False)

    second = await send(server, {"message": "think", "conversationId": cid, "model": "smart", "temperature": 1.5})
    reply = await item(server, cid, second["assistantMessageId"])
    assert (reply["model"], reply["message"]) == ("smart", "slow")
    [request] = second_fake.requests()
    assert (request["model"], request["temperature"], request["max_tokens"]) == ("smart-model", 1.5, 40)
    assert [message["content"] for message in request["messages"] if message["role"] != "system"] == [
        "hi", "quick", "think"]

    # Side by side: the same turn answered again by the other model, as a sibling.
    async with server.client() as client:
        again = await client.post(f"/api/conversations/{cid}/messages/{second['assistantMessageId']}/regenerate",
                                  json={"model": "fast"})
    assert again.status_code == 202, again.text
    await wait_for_status(server, cid, again.json()["assistantMessageId"])
    sibling = await item(server, cid, again.json()["assistantMessageId"])
    assert sibling["model"] == "fast" and sibling["siblings"] == [second["assistantMessageId"], sibling["id"]]
    assert fake_provider.requests()[-1]["temperature"] == 1.5, "the conversation's temperature, over fast's own"

    async with server.client() as client:
        conversation = (await client.get(f"/api/conversations/{cid}")).json()
        listed_record = next(record for record in (await client.get("/api/conversations")).json()["conversations"]
                             if record["conversationId"] == cid)
    expected = {"model": "smart", "systemPrompt": None, "temperature": 1.5, "maxTokens": None, "tools": None}
    assert conversation["settings"] == expected and listed_record["settings"] == expected


async def test_settings_are_validated_by_name_and_a_patch_changes_them_from_the_next_reply_on(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process()
    sent = await send(server, {"message": "hi"})
    cid = sent["conversationId"]
    base = f"/api/conversations/{cid}"
    async with server.client() as client:
        for body, field in (({"model": "gpt-9"}, "gpt-9"), ({"temperature": 2.5}, "temperature"),
                            ({"maxTokens": 0}, "maxTokens"), ({"colour": "red"}, "colour"), ({}, "title")):
            answer = await client.patch(base, json=body)
            assert answer.status_code == 422 and field in answer.json()["detail"], (body, answer.text)
        refused = await client.post("/chat", json={"message": "x", "conversationId": cid, "model": "gpt-9"})
        assert refused.status_code == 422 and "'gpt-9'" in refused.json()["detail"], refused.text
        changed = await client.patch(base, json={"systemPrompt": "Answer in French.", "temperature": 0.2,
                                                 "maxTokens": 3})
        assert changed.status_code == 200, changed.text
        assert changed.json()["settings"] == {"model": None, "systemPrompt": "Answer in French.", "temperature": 0.2,
                                              "maxTokens": 3, "tools": None}
        renamed = await client.patch(base, json={"title": "French", "temperature": None})
        assert renamed.json()["title"] == "French" and renamed.json()["settings"]["temperature"] is None
        assert renamed.json()["settings"]["maxTokens"] == 3, "a field left out keeps its value"
    fake_provider.script(tokens=["un ", "deux ", "trois ", "quatre"])
    later = await send(server, {"message": "count", "conversationId": cid})
    request = fake_provider.requests()[-1]
    assert request["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert request["max_tokens"] == 3 and "temperature" not in request
    cut = await item(server, cid, later["assistantMessageId"])
    assert (cut["status"], cut["message"], cut["finishReason"]) == ("completed", "un deux trois ", "length")


async def test_no_limit_is_sent_unless_one_is_set_and_a_cut_reply_says_so_in_every_view(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process()
    fake_provider.script(count=600)
    long = await send(server, {"message": "a long answer"})
    whole = await item(server, long["conversationId"], long["assistantMessageId"])
    assert len(whole["message"].split()) == 600 and whole["finishReason"] == "stop"
    assert "max_tokens" not in fake_provider.requests()[-1], "no silent cap of 512 tokens"

    async with AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                           http_client=httpx.AsyncClient(transport=server.transport)) as client:
        response = await client.responses.create(model="fake-model", input="go on", max_output_tokens=5)
        assert response.status == "incomplete" and response.incomplete_details is not None
        assert response.incomplete_details.reason == "max_output_tokens"
        completion = await client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "go on"}], max_tokens=5)
        assert completion.choices[0].finish_reason == "length"
        chunks = await client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "go on"}], max_completion_tokens=5, stream=True)
        reasons = [chunk.choices[0].finish_reason async for chunk in chunks if chunk.choices]
        assert reasons[-1] == "length"

    async with server.client() as client, client.stream(
            "POST", "/api/chat", json={"id": "ai-sdk-cut", "maxTokens": 5, "messages": [
                {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "go on"}]}]}) as answer:
        chunks_seen = [json.loads(line[5:]) async for line in answer.aiter_lines()
                       if line.startswith("data:") and line[5:].strip().startswith("{")]
    metadata = [chunk["messageMetadata"] for chunk in chunks_seen if chunk.get("type") == "message-metadata"]
    assert metadata and metadata[-1]["finishReason"] == "length"


async def test_a_conversation_whose_model_was_removed_gets_an_error_reply_naming_it(
    in_process: InProcessStarter, fake_provider: FakeProvider, second_fake: FakeProvider, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAST_KEY", "sk-fast")
    both = models_file(tmp_path, fake_provider, second_fake)
    state = f"sqlite:///{tmp_path / 'kept.db'}"
    before = await in_process(STREAMCHAT_MODELS_FILE=str(both), STREAMCHAT_STATE_URL=state)
    sent = await send(before, {"message": "hi", "model": "smart"})
    assert before.shutdown is not None
    await before.shutdown()

    only_fast = tmp_path / "fast-only.toml"
    only_fast.write_text(both.read_text().split("[[models]]\nname = \"smart\"")[0])
    after = await in_process(STREAMCHAT_MODELS_FILE=str(only_fast), STREAMCHAT_STATE_URL=state)
    async with after.client() as client:
        answer = await client.post("/chat", json={"message": "again", "conversationId": sent["conversationId"]})
    assert answer.status_code == 200, answer.text
    ended = await wait_for_status(after, sent["conversationId"], answer.json()["assistantMessageId"])
    assert ended["status"] == "error" and "'smart'" in ended["error"], ended
    assert len(second_fake.requests()) == 1, "the removed model was not called"
