"""The tool calls of one model turn, put together from the pieces the provider streams."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamchat.llm.base import ProviderError, ToolCall, ToolCallDelta


@dataclass(slots=True)
class _Growing:
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)


class ToolCallParts:
    """Collects a turn's ToolCallDeltas by index. The first id and name a call gets (not empty) are kept: some
    compatible servers repeat them in every piece, which must not double them."""

    def __init__(self) -> None:
        self._calls: dict[int, _Growing] = {}

    def add(self, delta: ToolCallDelta) -> None:
        call = self._calls.get(delta.index)
        if call is None:
            call = self._calls[delta.index] = _Growing()
        if not call.id:
            call.id = delta.id
        if not call.name:
            call.name = delta.name
        if delta.arguments:
            call.arguments.append(delta.arguments)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def calls(self) -> list[ToolCall]:
        """The whole calls, in index order; ProviderError if the model left one without an id or name."""
        whole: list[ToolCall] = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if not call.id or not call.name:
                missing = "name" if call.id else "id"
                raise ProviderError(f"provider streamed tool call {index} without its {missing}")
            whole.append(ToolCall(call.id, call.name, "".join(call.arguments)))
        return whole
