"""A conversation's messages as a tree, and its one active branch: pure functions, no I/O.

Each message names its parent (`parentId`): null for a root, else the message it follows. Editing a
message adds a sibling of it; regenerating a reply adds a sibling reply; so one conversation holds many
branches, and exactly one of them, named by its leaf, is active. The order nodes are given in is their
creation order (the stream's item order); a parent is always created before its children.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: The wire name of a message's parent, on its stream item.
PARENT_FIELD = "parentId"
#: How the root choice (key None) is spelt in JSON, whose keys are strings; message ids are never empty.
ROOT_KEY = ""


class UnknownMessage(KeyError):
    """An id that names no message of the tree; `message_id` is that id."""

    def __init__(self, message_id: str) -> None:
        super().__init__(message_id)
        self.message_id = message_id


@dataclass(frozen=True, slots=True)
class Node:
    """One message as the tree sees it.

    `parent_recorded` tells "parent recorded as null" (a root: parent_recorded and parent_id None) from
    "no parent recorded" (an item written before messages had parents: its parent is taken to be the message
    created just before it, so old conversations read as one straight branch without any migration).
    """

    id: str
    parent_id: str | None
    parent_recorded: bool

    @classmethod
    def child_of(cls, message_id: str, parent_id: str | None) -> Node:
        """A message whose parent was recorded (None: a root)."""
        return cls(message_id, parent_id, True)

    @classmethod
    def legacy(cls, message_id: str) -> Node:
        """A message written before parents were recorded."""
        return cls(message_id, None, False)

    @classmethod
    def of_item(cls, message_id: str, data: Mapping[str, Any]) -> Node:
        """The node of a stream item's data: a missing `parentId` means legacy, a null one means a root."""
        if PARENT_FIELD not in data:
            return cls.legacy(message_id)
        parent = data[PARENT_FIELD]
        return cls.child_of(message_id, parent if isinstance(parent, str) else None)


class Tree:
    """The messages of one conversation, linked to their parents and children; immutable once built.

    Build it with `Tree.of`. Every query on an id the tree does not hold raises `UnknownMessage`.
    """

    __slots__ = ("_children", "_order", "_parent", "_position")

    def __init__(self) -> None:
        self._order: list[str] = []
        self._parent: dict[str, str | None] = {}
        # Children of each message in creation order; the roots under the key None.
        self._children: dict[str | None, list[str]] = {None: []}
        # Each message's index among its siblings, so sibling_index needs no search.
        self._position: dict[str, int] = {}

    @classmethod
    def of(cls, nodes: Iterable[Node]) -> Tree:
        """The tree of `nodes`, given in creation order, in one pass.

        A legacy node's parent is the node given just before it (none for the first). A recorded parent that
        names no message given earlier (its item was lost, or it is the node itself or a later one) makes the
        node a root: the conversation stays readable, and no order of ids can make a cycle. Two nodes with one
        id are a caller's error (stream items are unique by id): ValueError.
        """
        tree = cls()
        previous: str | None = None
        for node in nodes:
            if node.id in tree._parent:
                raise ValueError(f"message {node.id!r} appears twice")
            parent = node.parent_id if node.parent_recorded else previous
            if parent is not None and parent not in tree._parent:
                parent = None
            siblings = tree._children[parent]
            tree._position[node.id] = len(siblings)
            siblings.append(node.id)
            tree._parent[node.id] = parent
            tree._children[node.id] = []
            tree._order.append(node.id)
            previous = node.id
        return tree

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[str]:
        """Every message id in creation order."""
        return iter(self._order)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._parent

    def contains(self, message_id: str) -> bool:
        return message_id in self._parent

    def _known(self, message_id: str) -> str:
        if message_id not in self._parent:
            raise UnknownMessage(message_id)
        return message_id

    def parent(self, message_id: str) -> str | None:
        """The message's parent as resolved (legacy and dangling parents applied); None for a root."""
        return self._parent[self._known(message_id)]

    def children(self, message_id: str | None) -> tuple[str, ...]:
        """The message's children in creation order; `None` gives the roots."""
        if message_id is not None:
            self._known(message_id)
        return tuple(self._children[message_id])

    def roots(self) -> tuple[str, ...]:
        return tuple(self._children[None])

    def child_count(self, message_id: str | None) -> int:
        """How many children the message has (`None`: how many roots), without copying them."""
        if message_id is not None:
            self._known(message_id)
        return len(self._children[message_id])

    def siblings(self, message_id: str) -> tuple[str, ...]:
        """The messages with the same parent, in creation order, the message itself included."""
        return tuple(self._children[self.parent(message_id)])

    def sibling_index(self, message_id: str) -> int:
        """The message's index in `siblings(message_id)`."""
        return self._position[self._known(message_id)]

    def path_to(self, message_id: str) -> list[str]:
        """The branch from its root down to the message, root first: the history a reply to it reads."""
        path: list[str] = []
        current: str | None = self._known(message_id)
        while current is not None:
            path.append(current)
            current = self._parent[current]
        path.reverse()
        return path

    def leaf_under(self, message_id: str, chosen: Mapping[str | None, str]) -> str:
        """The leaf reached from the message by taking, at each message, its child in `chosen` (the child
        last active under it), or its most recently created child where `chosen` names none of its children
        (no entry, or an entry for a message since lost)."""
        current = self._known(message_id)
        while children := self._children[current]:
            pick = chosen.get(current)
            current = pick if pick is not None and pick in self._parent and self._parent[pick] == current \
                else children[-1]
        return current

    def latest_leaf(self) -> str | None:
        """The most recently created message (always a leaf: children come after their parent); None for an
        empty tree. What a conversation with no active record shows: for an old one, its last item."""
        return self._order[-1] if self._order else None


@dataclass(frozen=True, slots=True)
class ActiveBranch:
    """A conversation's active branch: its leaf, and what a switch must remember to come back to it.

    `chosen` maps a message (None for the roots) to the child last active under it. Only messages with more
    than one child at the time are recorded: a message with one child needs no choice, and every later child
    is made active when it is added (send, edit and regenerate each activate their new reply), which records
    the choice then. A straight conversation thus keeps an empty map, and a switch costs O(depth) plus a copy
    of the branch points ever chosen. The map is read-only.
    """

    leaf: str | None = None
    chosen: Mapping[str | None, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "chosen", MappingProxyType(dict(self.chosen)))

    def switch(self, tree: Tree, message_id: str) -> ActiveBranch:
        """The branch through `message_id` made active: its leaf is the one last active under it (see
        `Tree.leaf_under`), and the choices on its path are remembered so that a later switch to any message
        on it comes back to this leaf. Raises UnknownMessage for an id the tree does not hold."""
        leaf = tree.leaf_under(message_id, self.chosen)
        chosen = dict(self.chosen)
        parent: str | None = None
        for step in tree.path_to(leaf):
            if tree.child_count(parent) > 1:
                chosen[parent] = step
            parent = step
        return ActiveBranch(leaf, chosen)

    def resolve(self, tree: Tree) -> str | None:
        """The active leaf as the tree stands: the leaf under the recorded one (itself unless messages were
        added under it and not activated yet), or, if none is recorded or it is gone, the latest message."""
        if self.leaf is not None and self.leaf in tree:
            return tree.leaf_under(self.leaf, self.chosen)
        return tree.latest_leaf()

    def path(self, tree: Tree) -> list[str]:
        """The active branch, root first; empty for an empty tree."""
        leaf = self.resolve(tree)
        return tree.path_to(leaf) if leaf is not None else []

    def to_json(self) -> dict[str, Any]:
        """A JSON object for the record: `{"leaf": str | null, "chosen": {parent or "": child}}`."""
        return {"leaf": self.leaf,
                "chosen": {ROOT_KEY if parent is None else parent: child for parent, child in self.chosen.items()}}

    @classmethod
    def from_json(cls, value: Any) -> ActiveBranch:
        """The branch `to_json` wrote; ValueError naming the field for anything else."""
        if not isinstance(value, Mapping):
            raise ValueError("active branch: expected an object")
        leaf = value.get("leaf")
        if leaf is not None and (not isinstance(leaf, str) or not leaf):
            raise ValueError("active branch: leaf must be a non-empty string or null")
        chosen = value.get("chosen", {})
        if not isinstance(chosen, Mapping) or not all(
                isinstance(parent, str) and isinstance(child, str) and child for parent, child in chosen.items()):
            raise ValueError("active branch: chosen must map message ids to message ids")
        return cls(leaf, {None if parent == ROOT_KEY else parent: child for parent, child in chosen.items()})
