"""One conversation, owned in one place: its messages and their tree, its records, the use cases
on it and the reply runner."""
