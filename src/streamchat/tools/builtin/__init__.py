"""The built-in tools: each module is one tool, found like any tool file."""
