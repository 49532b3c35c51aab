"""Typed streams: the hub that sequences, keeps and fans out changes, in one process or across many."""
