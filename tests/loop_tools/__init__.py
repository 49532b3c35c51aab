"""Tool files for the tool-loop tests (STREAMCHAT_TOOLS=loop_tools): each records what happened to it
in this process, so an in-process test can see a handler start, report progress, fail or be cancelled."""
