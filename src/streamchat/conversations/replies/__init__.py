"""A reply: the runner that writes it, and what it holds while it runs (its conversation's turn,
its place in its key's quota, its index entry, its pieces)."""
