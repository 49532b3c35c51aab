"""Sequencers: where a stream group's changes get their seq (in-process, or Redis across instances)."""

from streamchat.framework.streams.sequencers.base import Sequenced, Sequencer
from streamchat.framework.streams.sequencers.local import LocalSequencer

__all__ = ["LocalSequencer", "Sequenced", "Sequencer"]
