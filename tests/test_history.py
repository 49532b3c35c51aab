"""What the model reads, as a pure function: the branch being answered, within the budget."""

from __future__ import annotations

from streamchat.conversations.branches import tree_of
from streamchat.conversations.history import history
from streamchat.conversations.messages import ConversationMessage
from streamchat.framework import Item

AT = "2026-11-01T10:00:00.000Z"


def message(item_id: str, sender: str, text: str, parent: str | None, status: str = "completed"
            ) -> Item[ConversationMessage]:
    data = ConversationMessage.model_validate({"message": text, "from": sender, "status": status, "timestamp": AT,
                                               "parentId": parent})
    return Item(item_id, 0, data)


ITEMS = [message("u1", "user", "first", None), message("a1", "assistant", "one", "u1"),
         message("a1b", "assistant", "uno", "u1"), message("u2", "user", "second", "a1b"),
         message("a2", "assistant", "", "u2", "streaming"), message("u1b", "user", "first, edited", None)]


def test_the_branch_from_its_root_to_the_turn_and_nothing_of_the_others() -> None:
    tree = tree_of(ITEMS)
    assert [turn.content for turn in history(ITEMS, tree, "u2", 10_000)] == ["first", "uno", "second"]
    assert [turn.content for turn in history(ITEMS, tree, "u1b", 10_000)] == ["first, edited"]
    assert [turn.role for turn in history(ITEMS, tree, "u2", 10_000)] == ["user", "assistant", "user"]


def test_the_newest_turns_are_kept_first_within_the_budget_and_the_question_always() -> None:
    tree = tree_of(ITEMS)
    assert [turn.content for turn in history(ITEMS, tree, "u2", len("uno") + len("second"))] == ["uno", "second"]
    assert [turn.content for turn in history(ITEMS, tree, "u2", 1)] == ["second"]
