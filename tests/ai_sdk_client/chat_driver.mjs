// What tools.mjs and client_tools.mjs set up alike to drive the SDK's own chat: the transport to the
// server, a copy of it that notes what each response brought and what each request sent, and a chat
// whose state is kept in memory. `ai` is the SDK version the script was asked for, loaded by the script.
export const TIMEOUT_MS = 60_000;

export function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A chat's state kept in memory, as the framework bindings keep it in theirs.
class MemoryState {
  constructor() { this.status = "ready"; this.error = undefined; this.messages = []; }
  pushMessage(message) { this.messages = [...this.messages, message]; }
  popMessage() { this.messages = this.messages.slice(0, -1); }
  replaceMessage(index, message) {
    this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
  }
  snapshot(thing) { return structuredClone(thing); }
}

// `version` sets the X-AI-SDK-Version header; `body`, when given, is sent with every request.
export function chatDriver(ai, { baseUrl, version, body }) {
  const transport = new ai.DefaultChatTransport({
    api: `${baseUrl}/api/chat`,
    headers: version ? { "X-AI-SDK-Version": version } : undefined,
    ...(body === undefined ? {} : { body }),
  });

  // The chunk types of every response read, in order, one list per response, and each request's
  // trigger and last message (what the chat sent).
  const responses = [];
  const sent = [];
  function tapped(stream) {
    const seen = [];
    responses.push(seen);
    return stream.pipeThrough(new TransformStream({
      transform(chunk, out) {
        seen.push(chunk.type);
        out.enqueue(chunk);
      },
    }));
  }

  const watchedTransport = {
    async sendMessages(options) {
      sent.push({ trigger: options.trigger, last: options.messages[options.messages.length - 1] });
      return tapped(await transport.sendMessages(options));
    },
    async reconnectToStream(options) {
      const stream = await transport.reconnectToStream(options);
      return stream === null ? null : tapped(stream);
    },
  };

  class MemoryChat extends ai.AbstractChat {
    constructor(options) { super({ ...options, state: new MemoryState() }); }
  }

  return { transport, watchedTransport, tapped, responses, sent, MemoryChat };
}
