"""The chat product: every module here is a step, discovered by the framework."""
