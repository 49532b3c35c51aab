"""MCP servers as tool sources: `config` (the models file's `[[mcp_servers]]` entry, no SDK needed),
`servers.McpServers` (the app service: connect, list, call) and `connection` (one server's session).

Import from the submodules: this package imports nothing, so reading the models file never loads
the MCP SDK.
"""
