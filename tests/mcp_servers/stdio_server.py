"""A test MCP server over stdio (see toolbox.py for its tools)."""

from toolbox import build

if __name__ == "__main__":
    build("stdio-test").run()
