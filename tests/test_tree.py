"""The message tree and the active branch (streamchat.conversations.tree): pure, so tested without a server."""

from __future__ import annotations

import json
from collections.abc import Mapping
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamchat.conversations.tree import ActiveBranch, Node, Tree, UnknownMessage


class Chat:
    """Builds nodes the way the conversation service does: each send, edit and regenerate adds its messages
    with their parents and makes the new reply the active leaf."""

    def __init__(self, nodes: list[Node] | None = None) -> None:
        self.nodes = list(nodes or [])
        self.active = ActiveBranch()

    @property
    def tree(self) -> Tree:
        return Tree.of(self.nodes)

    def _answer(self, user: str, parent: str | None, reply: str) -> None:
        self.nodes += [Node.child_of(user, parent), Node.child_of(reply, user)]
        self.switch(reply)

    def send(self, user: str, reply: str) -> None:
        self._answer(user, self.active.resolve(self.tree), reply)

    def edit(self, user: str, new_user: str, reply: str) -> None:
        self._answer(new_user, self.tree.parent(user), reply)

    def regenerate(self, reply: str, new_reply: str) -> None:
        self.nodes.append(Node.child_of(new_reply, self.tree.parent(reply)))
        self.switch(new_reply)

    def switch(self, message_id: str) -> str:
        self.active = self.active.switch(self.tree, message_id)
        leaf = self.active.resolve(self.tree)
        assert leaf is not None
        return leaf


@pytest.fixture
def branched() -> Chat:
    """u1→a1 and its regeneration a1b; u1 edited into u1b→a2; then u2→a3 under a2, u2 edited into u2b→a4,
    and a4 regenerated as a4b."""
    chat = Chat()
    chat.send("u1", "a1")
    chat.regenerate("a1", "a1b")
    chat.edit("u1", "u1b", "a2")
    chat.send("u2", "a3")
    chat.edit("u2", "u2b", "a4")
    chat.regenerate("a4", "a4b")
    return chat


def test_edits_and_regenerates_shape_the_tree(branched: Chat) -> None:
    tree = branched.tree
    assert tree.roots() == ("u1", "u1b")
    assert tree.children("u1") == ("a1", "a1b")
    assert tree.children("u1b") == ("a2",)
    assert tree.children("a2") == ("u2", "u2b")
    assert tree.children("u2") == ("a3",)
    assert tree.children("u2b") == ("a4", "a4b")
    assert tree.children("a4b") == ()
    assert tree.parent("u1b") is None and tree.parent("u2b") == "a2" and tree.parent("a4b") == "u2b"
    assert list(tree) == ["u1", "a1", "a1b", "u1b", "a2", "u2", "a3", "u2b", "a4", "a4b"]
    assert len(tree) == 10


def test_siblings_and_their_index(branched: Chat) -> None:
    tree = branched.tree
    assert tree.siblings("u1b") == ("u1", "u1b") and tree.sibling_index("u1b") == 1
    assert tree.siblings("u1") == ("u1", "u1b") and tree.sibling_index("u1") == 0
    assert tree.siblings("a4") == ("a4", "a4b") and tree.sibling_index("a4b") == 1
    assert tree.siblings("a3") == ("a3",) and tree.sibling_index("a3") == 0


def test_the_new_reply_is_active_and_the_history_is_its_branch(branched: Chat) -> None:
    tree = branched.tree
    assert branched.active.resolve(tree) == "a4b"
    assert branched.active.path(tree) == ["u1b", "a2", "u2b", "a4b"]
    # What the model reads to write a4b: root to the user message it answers, no other branch.
    assert tree.parent("a4b") == "u2b" and tree.path_to("u2b") == ["u1b", "a2", "u2b"]


def test_leaf_under_takes_the_chosen_child_else_the_latest(branched: Chat) -> None:
    tree = branched.tree
    assert tree.leaf_under("u1b", {}) == "a4b"
    assert tree.leaf_under("u1b", {"a2": "u2"}) == "a3"
    assert tree.leaf_under("u2b", {"u2b": "a4"}) == "a4"
    assert tree.leaf_under("a3", {}) == "a3"
    # A choice that names no child of the message (lost, or another message's child) falls back to the latest.
    assert tree.leaf_under("u2b", {"u2b": "gone"}) == "a4b"
    assert tree.leaf_under("u2b", {"u2b": "a1"}) == "a4b"


def test_switching_to_an_ancestor_comes_back_to_the_leaf_last_active_under_it(branched: Chat) -> None:
    assert branched.switch("u1") == "a1b"
    assert branched.switch("u1b") == "a4b"
    assert branched.switch("a4") == "a4"
    assert branched.switch("u1b") == "a4"
    assert branched.switch("u2") == "a3"
    assert branched.switch("u1b") == "a3"
    assert branched.switch("u2b") == "a4"
    assert branched.switch("a1") == "a1"
    assert branched.switch("u1") == "a1"
    assert branched.active.path(branched.tree) == ["u1", "a1"]


def test_a_message_sent_after_a_switch_follows_the_active_leaf(branched: Chat) -> None:
    branched.switch("a3")
    branched.send("u3", "a5")
    tree = branched.tree
    assert tree.path_to("a5") == ["u1b", "a2", "u2", "a3", "u3", "a5"]
    assert branched.switch("u1") == "a1b"
    assert branched.switch("u1b") == "a5"


def test_a_straight_conversation_records_no_choices() -> None:
    chat = Chat()
    for turn in range(5):
        chat.send(f"u{turn}", f"a{turn}")
    assert chat.active.leaf == "a4" and dict(chat.active.chosen) == {}
    assert chat.active.to_json() == {"leaf": "a4", "chosen": {}}


def test_legacy_items_read_as_one_straight_branch() -> None:
    tree = Tree.of(Node.legacy(i) for i in ["m1", "m2", "m3", "m4"])
    assert tree.roots() == ("m1",)
    assert tree.path_to("m4") == ["m1", "m2", "m3", "m4"]
    assert tree.siblings("m3") == ("m3",) and tree.sibling_index("m3") == 0
    assert tree.latest_leaf() == "m4"
    # An old conversation has no active record: it shows its last item's branch, every message.
    assert ActiveBranch().path(tree) == ["m1", "m2", "m3", "m4"]


def test_a_new_conversation_may_follow_legacy_items() -> None:
    chat = Chat([Node.legacy("m1"), Node.legacy("m2")])
    chat.send("u3", "a3")
    assert chat.tree.path_to("a3") == ["m1", "m2", "u3", "a3"]
    chat.regenerate("m2", "m2b")
    assert chat.tree.siblings("m2") == ("m2", "m2b")
    chat.edit("m1", "m1b", "a4")
    tree = chat.tree
    assert tree.roots() == ("m1", "m1b") and tree.path_to("a4") == ["m1b", "a4"]
    assert chat.switch("m1") == "m2b"
    assert chat.switch("m2") == "a3"


def test_a_legacy_item_after_new_ones_still_follows_the_one_before_it() -> None:
    tree = Tree.of([Node.child_of("u1", None), Node.child_of("a1", "u1"), Node.child_of("a1b", "u1"),
                    Node.legacy("old")])
    assert tree.parent("old") == "a1b"


def test_item_data_tells_a_null_parent_from_a_missing_one() -> None:
    assert Node.of_item("m", {"message": "hi"}) == Node.legacy("m")
    assert Node.of_item("m", {"parentId": None}) == Node("m", None, True)
    assert Node.of_item("m", {"parentId": "p"}) == Node("m", "p", True)


@pytest.mark.parametrize("parent", ["lost", "u2", "later"], ids=["missing", "itself", "created-after"])
def test_a_parent_that_names_no_earlier_message_makes_a_root(parent: str) -> None:
    tree = Tree.of([Node.child_of("u1", None), Node.child_of("a1", "u1"), Node.child_of("u2", parent),
                    Node.child_of("a2", "u2"), Node.child_of("later", "a1")])
    assert tree.parent("u2") is None
    assert tree.roots() == ("u1", "u2")
    assert tree.path_to("a2") == ["u2", "a2"]
    assert tree.sibling_index("u2") == 1


def test_one_id_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'m1' appears twice"):
        Tree.of([Node.legacy("m1"), Node.legacy("m1")])


@pytest.mark.parametrize("query", ["parent", "children", "child_count", "siblings", "sibling_index", "path_to"])
def test_an_unknown_id_raises_unknown_message(branched: Chat, query: str) -> None:
    with pytest.raises(UnknownMessage) as raised:
        getattr(branched.tree, query)("nope")
    assert raised.value.message_id == "nope" and isinstance(raised.value, KeyError)


def test_unknown_ids_in_leaf_under_and_switch(branched: Chat) -> None:
    with pytest.raises(UnknownMessage):
        branched.tree.leaf_under("nope", {})
    with pytest.raises(UnknownMessage):
        branched.active.switch(branched.tree, "nope")
    assert not branched.tree.contains("nope") and "nope" not in branched.tree and branched.tree.contains("a1")


def test_resolve_falls_back_to_the_latest_message_when_the_leaf_is_gone(branched: Chat) -> None:
    without_leaf = Tree.of(node for node in branched.nodes if node.id != "a4b")
    assert branched.active.resolve(without_leaf) == "a4"
    assert ActiveBranch(leaf="a1").resolve(without_leaf) == "a1"


def test_resolve_follows_messages_added_under_the_leaf_before_they_are_activated(branched: Chat) -> None:
    tree = Tree.of([*branched.nodes, Node.child_of("u3", "a4b")])
    assert branched.active.resolve(tree) == "u3"


def test_an_empty_conversation_has_no_active_branch() -> None:
    tree = Tree.of([])
    assert tree.latest_leaf() is None and tree.roots() == ()
    assert ActiveBranch().resolve(tree) is None and ActiveBranch().path(tree) == []


def test_the_root_choice_is_written_as_an_empty_key(branched: Chat) -> None:
    branched.switch("u1")
    written = branched.active.to_json()
    assert written["chosen"][""] == "u1" and written["leaf"] == "a1b"
    assert ActiveBranch.from_json(json.loads(json.dumps(written))) == branched.active


@pytest.mark.parametrize("value", [[], {"leaf": 5}, {"leaf": ""}, {"leaf": "a", "chosen": []},
                                   {"leaf": "a", "chosen": {"u": 1}}, {"leaf": "a", "chosen": {"u": ""}}])
def test_a_malformed_record_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="active branch"):
        ActiveBranch.from_json(value)


def test_the_choices_cannot_be_changed_in_place(branched: Chat) -> None:
    with pytest.raises(TypeError):
        branched.active.chosen["u1"] = "a1"  # type: ignore[index]


# Property tests: random trees built by appending messages whose parent is an earlier one, a root, a legacy
# item (no parent recorded) or a lost message.

Parent = int | str | None
parents = st.lists(st.one_of(st.none(), st.just("legacy"), st.just("lost"), st.integers(0, 1000)), max_size=30)
message_ids = st.text("abc-1", min_size=1, max_size=4)
#: Enough random shapes to find a broken rule while the whole file stays well under two seconds.
few = settings(max_examples=40, deadline=None)


def random_tree(choices: list[Parent]) -> tuple[list[Node], Tree]:
    nodes: list[Node] = []
    for index, choice in enumerate(choices):
        message_id = f"m{index}"
        if choice == "legacy":
            nodes.append(Node.legacy(message_id))
        elif isinstance(choice, int) and index:
            nodes.append(Node.child_of(message_id, f"m{choice % index}"))
        else:
            nodes.append(Node.child_of(message_id, None if choice is None or isinstance(choice, int) else "lost"))
    return nodes, Tree.of(nodes)


@few
@given(parents)
def test_parents_resolve_as_documented(choices: list[Parent]) -> None:
    nodes, tree = random_tree(choices)
    for index, node in enumerate(nodes):
        expected = node.parent_id if node.parent_recorded else (nodes[index - 1].id if index else None)
        assert tree.parent(node.id) == (expected if expected in tree else None)


@few
@given(parents)
def test_every_path_starts_at_a_root_and_follows_parents(choices: list[Parent]) -> None:
    _, tree = random_tree(choices)
    for message_id in tree:
        path = tree.path_to(message_id)
        assert path[0] in tree.roots() and path[-1] == message_id
        assert all(tree.parent(child) == parent for parent, child in pairwise(path))


@few
@given(parents)
def test_siblings_partition_the_children(choices: list[Parent]) -> None:
    _, tree = random_tree(choices)
    order = {message_id: index for index, message_id in enumerate(tree)}
    groups = [tree.children(None), *(tree.children(message_id) for message_id in tree)]
    assert sorted(message_id for group in groups for message_id in group) == sorted(tree)
    for group in groups:
        assert [order[message_id] for message_id in group] == sorted(order[message_id] for message_id in group)
    for message_id in tree:
        siblings = tree.siblings(message_id)
        assert siblings == tree.children(tree.parent(message_id))
        assert siblings[tree.sibling_index(message_id)] == message_id
        assert tree.child_count(message_id) == len(tree.children(message_id))


@few
@given(st.data())
def test_leaf_under_reaches_a_leaf_below_the_message(data: st.DataObject) -> None:
    _, tree = random_tree(data.draw(parents))
    ids = list(tree)
    if not ids:
        return
    chosen: Mapping[str | None, str] = data.draw(st.dictionaries(
        st.sampled_from([None, *ids]), st.sampled_from([*ids, "lost"])))
    for message_id in ids:
        leaf = tree.leaf_under(message_id, chosen)
        assert tree.children(leaf) == ()
        assert message_id in tree.path_to(leaf)


@few
@given(st.data())
def test_a_switch_resolves_to_its_leaf_and_an_ancestor_comes_back_to_it(data: st.DataObject) -> None:
    _, tree = random_tree(data.draw(parents))
    ids = list(tree)
    if not ids:
        return
    active = ActiveBranch()
    for target in data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=8)):
        active = active.switch(tree, target)
        leaf = active.resolve(tree)
        assert leaf is not None and leaf == active.leaf and tree.children(leaf) == ()
        assert target in tree.path_to(leaf)
        for ancestor in tree.path_to(leaf):
            assert active.switch(tree, ancestor).leaf == leaf
        assert ActiveBranch.from_json(json.loads(json.dumps(active.to_json()))) == active


@few
@given(st.one_of(st.none(), message_ids), st.dictionaries(st.one_of(st.none(), message_ids), message_ids))
def test_json_round_trip_is_identity(leaf: str | None, chosen: dict[str | None, str]) -> None:
    branch = ActiveBranch(leaf, chosen)
    assert ActiveBranch.from_json(json.loads(json.dumps(branch.to_json()))) == branch


class RecordAll:
    """The rule as the issue states it, written plainly: remember the child under every message of each
    branch made active. ActiveBranch records only branch points; under the service's discipline (each new
    message is activated as it is added) both must always pick the same leaf."""

    def __init__(self) -> None:
        self.leaf: str | None = None
        self.chosen: dict[str | None, str] = {}

    def switch(self, tree: Tree, message_id: str) -> None:
        current = message_id
        while children := tree.children(current):
            pick = self.chosen.get(current)
            current = pick if pick in children else children[-1]
        self.leaf = current
        parent: str | None = None
        for step in tree.path_to(current):
            self.chosen[parent] = step
            parent = step


operations = st.lists(st.tuples(st.sampled_from(["send", "edit", "regenerate", "switch"]), st.integers(0, 1000)),
                      max_size=25)


@few
@given(operations)
def test_recording_only_branch_points_picks_what_recording_everything_picks(steps: list[tuple[str, int]]) -> None:
    chat, plain = Chat(), RecordAll()
    users: list[str] = []
    replies: list[str] = []
    for number, (operation, pick) in enumerate(steps):
        user, reply = f"u{number}", f"a{number}"
        if operation == "switch" and users:
            target = [*users, *replies][pick % (len(users) + len(replies))]
            chat.switch(target)
            plain.switch(chat.tree, target)
        else:
            if operation == "regenerate" and replies:
                chat.regenerate(replies[pick % len(replies)], reply)
            elif operation == "edit" and users:
                chat.edit(users[pick % len(users)], user, reply)
                users.append(user)
            else:
                chat.send(user, reply)
                users.append(user)
            replies.append(reply)
            plain.switch(chat.tree, reply)
        tree = chat.tree
        assert chat.active.leaf == plain.leaf
        for message_id in tree:
            assert tree.leaf_under(message_id, chat.active.chosen) == tree.leaf_under(message_id, plain.chosen)
