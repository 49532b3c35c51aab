"""`streamchat serve | chat | conversations | models`: run the server, or talk to one from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

import httpx
from websockets.exceptions import WebSocketException

from streamchat.client import StreamchatClient, StreamchatError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamchat", description="Event-driven streaming AI chat service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server", description="Run the streamchat server.")
    serve.add_argument("--host", default=None, help="interface to bind (default: $STREAMCHAT_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: $STREAMCHAT_PORT or 3000)")

    chat = commands.add_parser("chat", help="send a message and print the reply live",
                               description="Send a message and print the AI reply as it streams in.")
    chat.add_argument("message", help="the message to send")
    chat.add_argument("-c", "--conversation", default=None, help="continue this conversation id")
    _add_client_options(chat)

    listing = commands.add_parser("conversations", help="list conversations",
                                  description="List conversations, most recent first.")
    _add_client_options(listing)

    models = commands.add_parser("models", help="list the models the server can run",
                                 description="List the models the server can run; * marks the one answering.")
    _add_client_options(models)

    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve_command(args.host, args.port)
    if args.command == "chat":
        return asyncio.run(chat_command(args.url, args.message, args.conversation, args.key))
    if args.command == "models":
        return asyncio.run(models_command(args.url, args.key))
    return asyncio.run(conversations_command(args.url, args.key))


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("STREAMCHAT_URL", "http://127.0.0.1:3000"),
                        help="server URL (default: $STREAMCHAT_URL or http://127.0.0.1:3000)")
    parser.add_argument("--key", default=os.environ.get("STREAMCHAT_API_KEY"),
                        help="API key, if the server needs one (default: $STREAMCHAT_API_KEY)")


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def serve_command(host: str | None, port: int | None) -> int:
    import uvicorn

    from streamchat import serving
    from streamchat.app import create_app
    from streamchat.framework import WiringError
    from streamchat.settings import get_settings

    try:
        settings = get_settings()
        app = create_app(settings)
    except (ValueError, WiringError, ImportError) as error:
        print(f"streamchat: cannot start: {error}", file=sys.stderr)
        return 2
    serving.configure_gc()
    bind_host, bind_port = host or settings.host, settings.port if port is None else port
    if bind_host not in LOOPBACK and not (settings.api_keys or settings.api_keys_file):
        logging.getLogger("streamchat.cli").warning(
            "serving on a non-loopback address without API keys: anyone who can reach this port can read "
            "every conversation and spend provider tokens; set STREAMCHAT_API_KEYS", extra={"host": bind_host})
    print(f"streamchat: serving http://{bind_host}:{bind_port} with the {settings.provider} provider "
          f"(Ctrl+C to stop)", file=sys.stderr, flush=True)
    # On SIGTERM: stop accepting, give open connections (SSE, sockets) a bounded time, then the
    # runtime finishes or hands back running replies within STREAMCHAT_SHUTDOWN_SECONDS. Once it
    # is done uvicorn raises the signal again for the handler it found: this one makes that a clean
    # exit (status 0, as supervisors expect of a graceful stop) instead of death by signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    serving.Server(uvicorn.Config(
        app, host=bind_host, port=bind_port, log_level="warning", ws=serving.WebSocketProtocol,
        ws_max_size=settings.ws_max_frame_bytes, ws_per_message_deflate=settings.ws_compression,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_seconds)),
        timeout_keep_alive=settings.keep_alive_seconds)).run()
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _talk(url: str, key: str | None, action: Callable[[StreamchatClient], Awaitable[int]]) -> int:
    """Run one command's calls; what went wrong is said in one line, with 1 for a refusal, 2 for no server."""
    try:
        async with StreamchatClient(url, key) as client:
            return await action(client)
    except StreamchatError as error:
        print(f"streamchat: {error}", file=sys.stderr)
        return 1
    except (httpx.HTTPError, WebSocketException, ConnectionError, TimeoutError) as error:
        print(f"streamchat: cannot reach {url}: {error}", file=sys.stderr)
        return 2


async def chat_command(url: str, message: str, conversation: str | None, key: str | None) -> int:
    async def chat(client: StreamchatClient) -> int:
        accepted = await client.send(message, conversation)
        print(f"[conversation {accepted.conversation_id}]", file=sys.stderr)
        restarts = 0
        async with client.reply_text(accepted.conversation_id, accepted.assistant_message_id) as reply:
            async for piece in reply:
                if reply.restarts != restarts:
                    sys.stdout.write("\n[reply restarted]\n")
                    restarts = reply.restarts
                sys.stdout.write(piece)
                sys.stdout.flush()
        if reply.restarts != restarts:
            sys.stdout.write("\n[reply restarted]\n")
        sys.stdout.write("\n")
        assert reply.item is not None  # the reply ended: it has a last state
        if reply.item["status"] != "completed":
            print(f"[{reply.item['status']}: {reply.item.get('error', '')}]", file=sys.stderr)
            return 1
        return 0

    return await _talk(url, key, chat)


async def conversations_command(url: str, key: str | None) -> int:
    async def listing(client: StreamchatClient) -> int:
        for record in await client.conversations():
            print(f"{record['conversationId']}  {record['updatedAt']}  {record['title']}")
        return 0

    return await _talk(url, key, listing)


async def models_command(url: str, key: str | None) -> int:
    async def listing(client: StreamchatClient) -> int:
        answer = await client.models()
        serving = answer["serving"]
        for model in answer["models"]:
            mark = "*" if model["serving"] else " "
            state = serving["detail"] if model["serving"] else "installed" if model["installed"] else "not installed"
            print(f"{mark} {model['id']}  [{model['provider']}, {state}]  {model['description']}")
        return 0

    return await _talk(url, key, listing)


if __name__ == "__main__":
    raise SystemExit(main())
