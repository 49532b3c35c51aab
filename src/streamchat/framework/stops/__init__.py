"""Stopping running work by key: the registry of one process, and routing stops across instances."""
