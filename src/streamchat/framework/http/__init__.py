"""The HTTP face of a runtime: the app, the stream socket, SSE, and the Workbench API."""
