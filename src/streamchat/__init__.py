"""streamchat: an event-driven streaming AI chat service on a small, reusable step framework."""

__version__ = "0.1.0"
