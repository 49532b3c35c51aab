"""What an app hands its handlers beside the framework's own parts: settings, a catalog, models.

Given to the runtime once and reached from every handler as `ctx.service(Kind)`, so handlers need
no module globals and a test builds a runtime with the services it wants instead of patching any.
Looked up by type: the exact type first, else the one service that is an instance of it (an ABC's
backend); asking for one that is absent, or ambiguous, is a wiring error named at once.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

T = TypeVar("T")


class MissingService(LookupError):
    """A handler asked for a service the app did not provide (or for one several match)."""


class Services:
    def __init__(self, *provided: object) -> None:
        self._by_type: dict[type[Any], object] = {}
        for service in provided:
            self.add(service)

    def add(self, service: object) -> None:
        """Provide `service` (replacing one of its exact type)."""
        self._by_type[type(service)] = service

    def get(self, kind: type[T]) -> T:
        exact = self._by_type.get(kind)
        if exact is not None:
            return cast(T, exact)  # stored under its own type, so it is a T
        found = [service for service in self._by_type.values() if isinstance(service, kind)]
        if len(found) != 1:
            provided = sorted(type(service).__name__ for service in self._by_type.values())
            why = "none" if not found else f"{len(found)}"
            raise MissingService(f"{why} of the services provided is a {kind.__name__}; provided: {provided}")
        self._by_type[kind] = found[0]
        return found[0]
