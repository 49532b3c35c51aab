"""What a tool call can end with besides a result."""

from __future__ import annotations


class ToolError(Exception):
    """A call failed for a reason the model should hear (a bad expression, nothing to divide by):
    the loop ends the call `error` and gives the model this message, and the reply goes on."""


class ToolArgumentsError(ToolError):
    """The model's arguments are not JSON, or do not fit the tool's input: the tool is not run."""
