"""`streamchat serve | chat | conversations | models`: run the server, or talk to one from a terminal.

The talking commands go through `streamchat.client`'s blocking client, the interactive `chat`
through its terminal session (`streamchat.client.interactive`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable

from streamchat.client import StreamchatError, SyncStreamchatClient
from streamchat.client.interactive import UNREACHABLE, Session, show_reply


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamchat", description="Event-driven streaming AI chat service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server", description="Run the streamchat server.")
    serve.add_argument("--host", default=None, help="interface to bind (default: $STREAMCHAT_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: $STREAMCHAT_PORT or 3000)")

    chat = commands.add_parser(
        "chat", help="send a message and print the reply live, or talk interactively",
        description="Send a message and print the AI reply as it streams in. Without a message: an "
                    "interactive session (/help lists its commands; Ctrl-C stops a reply, Ctrl-D leaves).")
    chat.add_argument("message", nargs="?", default=None, help="the message to send (none: interactive)")
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
        if args.message is None:
            return interactive_command(args.url, args.conversation, args.key)
        return chat_command(args.url, args.message, args.conversation, args.key)
    if args.command == "models":
        return models_command(args.url, args.key)
    return conversations_command(args.url, args.key)


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
    models = app.state.models
    others = f" and {len(models.names()) - 1} more" if len(models.names()) > 1 else ""
    print(f"streamchat: serving http://{bind_host}:{bind_port} with the {models.entry(models.default).provider} "
          f"model {models.default}{others} (Ctrl+C to stop)", file=sys.stderr, flush=True)
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


def _talk(url: str, key: str | None, action: Callable[[SyncStreamchatClient], int]) -> int:
    """Run one command's calls; what went wrong is said in one line, with 1 for a refusal, 2 for no server
    (and 130, quietly, for a Ctrl-C that nothing else took)."""
    try:
        with SyncStreamchatClient(url, key) as client:
            return action(client)
    except KeyboardInterrupt:
        return 130
    except StreamchatError as error:
        print(f"streamchat: {error}", file=sys.stderr)
        return 1
    except UNREACHABLE as error:
        print(f"streamchat: cannot reach {url}: {error}", file=sys.stderr)
        return 2


def chat_command(url: str, message: str, conversation: str | None, key: str | None) -> int:
    """One message, its reply printed as it is written; 1 unless the reply completed (Ctrl-C stops it)."""
    def chat(client: SyncStreamchatClient) -> int:
        reply = client.send(message, conversation)
        print(f"[conversation {reply.conversation_id}]", file=sys.stderr)
        return 0 if show_reply(reply, sys.stdout, sys.stderr) == "completed" else 1

    return _talk(url, key, chat)


def interactive_command(url: str, conversation: str | None, key: str | None) -> int:
    """A prompt until /quit, Ctrl-D or Ctrl-C at the prompt; lines may also be piped in."""
    return _talk(url, key, lambda client: Session(client, conversation).run())


def conversations_command(url: str, key: str | None) -> int:
    def listing(client: SyncStreamchatClient) -> int:
        for record in client.conversations():
            print(f"{record['conversationId']}  {record['updatedAt']}  {record['title']}")
        return 0

    return _talk(url, key, listing)


def models_command(url: str, key: str | None) -> int:
    def listing(client: SyncStreamchatClient) -> int:
        answer = client.models()
        serving = answer["serving"]
        for model in answer["models"]:  # the configured ones; * the default
            mark = "*" if model["default"] else " "
            state = serving["detail"] if model["default"] else "configured"
            print(f"{mark} {model['name']}  [{model['provider']}, {state}]  {model['model']}")
        configured = {model["name"] for model in answer["models"]}
        for model in answer["embedded"]:  # what this server could run as well
            if model["id"] not in configured:
                state = "installed" if model["installed"] else "not installed"
                print(f"  {model['id']}  [local, {state}]  {model['description']}")
        return 0

    return _talk(url, key, listing)


if __name__ == "__main__":
    raise SystemExit(main())
