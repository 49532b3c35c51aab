"""Other clients' wire formats for the same conversations: the Vercel AI SDK's UI message stream,
the OpenAI Responses and Chat Completions APIs. Each is a view of the `conversation` stream, so a
reply started through one can be watched, resumed and stopped through any other."""
