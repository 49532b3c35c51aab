"""The embedded Gemma model, loaded for real from its PyPI package, streams a reply."""

from __future__ import annotations

import uuid

from conftest import ServerFactory
from helpers import Watcher, post_chat


async def test_embedded_model_streams_a_reply(servers: ServerFactory) -> None:
    server = servers.start(OPENAI_API_KEY=None, OPENAI_BASE_URL=None, STREAMCHAT_MAX_TOKENS="40")
    assert '"provider": "local"' in server.logs().replace('"provider":"local"', '"provider": "local"')
    cid = str(uuid.uuid4())
    async with Watcher(server.ws_url, cid) as watcher:
        accepted = await post_chat(server.url, "What is the capital of France?", cid)
        final = await watcher.until_finished(accepted["assistantMessageId"], timeout=120)
    assert final["status"] == "completed", final
    assert final["message"].strip()
    streaming = [v for v in watcher.watch.items(accepted["assistantMessageId"]) if v["status"] == "streaming"]
    assert len(streaming) > 2, "the embedded model's reply should arrive in several pieces"
