// Drive one version of the Vercel AI SDK's DefaultChatTransport against streamchat, as useChat does.
// Usage: node chat.mjs <package: ai-5.0.0 | ai-5 | ai-6 | ai-7 (on Node 22)> <scenario> <base-url> <chatId> [text]
// Scenarios:
//   send            send `text`, read the reply to its end
//   send-abort      send `text`, abort the fetch after ABORT_AFTER text deltas, then reconnectToStream
//   regenerate      regenerate the last reply (no messageId), read it to its end
//   resume          reconnectToStream only (prints {"resumed": null} when the server answers 204)
// Prints one JSON line: the assembled UI messages (readUIMessageStream) and what was seen; send-abort
// and resume print {"reconnected": bool} before it, as soon as the reconnect is answered.
// STREAMCHAT_TOKEN sets Authorization: Bearer; a thrown error prints {"error": message} and exits 1.
const [pkg, scenario, baseUrl, chatId, text = "hello"] = process.argv.slice(2);
const ai = await import(pkg);
const token = process.env.STREAMCHAT_TOKEN;
const transport = new ai.DefaultChatTransport({
  api: `${baseUrl}/api/chat`,
  headers: token ? { Authorization: `Bearer ${token}` } : undefined,
});
const abortAfter = Number(process.env.ABORT_AFTER || 3);

function userMessage(body) {
  return { id: ai.generateId(), role: "user", parts: [{ type: "text", text: body }] };
}

// Read a chunk stream into UI messages; `stopAfter` aborts once that many text deltas were seen.
async function read(stream, { controller, stopAfter } = {}) {
  const chunks = [];
  let deltas = 0;
  const tapped = stream.pipeThrough(new TransformStream({
    transform(chunk, out) {
      chunks.push(chunk.type);
      if (chunk.type === "text-delta") {
        deltas += 1;
        if (stopAfter !== undefined && deltas >= stopAfter) {
          out.enqueue(chunk);
          controller.abort();
          return;
        }
      }
      out.enqueue(chunk);
    },
  }));
  let message;
  try {
    for await (const snapshot of ai.readUIMessageStream({ stream: tapped, terminateOnError: true })) {
      message = snapshot;
    }
  } catch (error) {
    if (!(stopAfter !== undefined && controller.signal.aborted)) throw error;
  }
  const textOf = (m) => (m ? m.parts.filter((p) => p.type === "text").map((p) => p.text).join("") : null);
  return { id: message?.id ?? null, text: textOf(message), metadata: message?.metadata ?? null, chunks, deltas };
}

try {
  let result;
  if (scenario === "send") {
    const stream = await transport.sendMessages({
      chatId, messages: [userMessage(text)], trigger: "submit-message", messageId: undefined,
      abortSignal: undefined,
    });
    result = { sent: await read(stream) };
  } else if (scenario === "send-abort") {
    const controller = new AbortController();
    const stream = await transport.sendMessages({
      chatId, messages: [userMessage(text)], trigger: "submit-message", messageId: undefined,
      abortSignal: controller.signal,
    });
    const sent = await read(stream, { controller, stopAfter: abortAfter });
    const again = await transport.reconnectToStream({ chatId });
    // Tell the test the server has answered the reconnect (a test holding the reply releases it now).
    console.log(JSON.stringify({ reconnected: again !== null }));
    result = { sent, resumed: again === null ? null : await read(again) };
  } else if (scenario === "regenerate") {
    // useChat's regenerate() without a messageId: the last reply is dropped from `messages`.
    const stream = await transport.sendMessages({
      chatId, messages: [userMessage(text)], trigger: "regenerate-message", messageId: undefined,
      abortSignal: undefined,
    });
    result = { regenerated: await read(stream) };
  } else if (scenario === "resume") {
    const again = await transport.reconnectToStream({ chatId });
    console.log(JSON.stringify({ reconnected: again !== null }));
    result = { resumed: again === null ? null : await read(again) };
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
  console.log(JSON.stringify(result));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.message ?? error) }));
  process.exit(1);
}
