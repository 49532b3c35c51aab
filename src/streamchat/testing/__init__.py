"""Tools for testing step apps and benchmarking: a fake OpenAI-compatible server, scratch databases, child processes."""
