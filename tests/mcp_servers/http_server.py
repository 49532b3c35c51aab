"""A test MCP server over streamable HTTP on 127.0.0.1:<port> (argument 1), at /mcp; /health answers
once it listens. Its tools are toolbox.py's."""

import sys

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from toolbox import build

if __name__ == "__main__":
    server = build("http-test")

    @server.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
