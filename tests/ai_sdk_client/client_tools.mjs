// Drive one version of the Vercel AI SDK against streamchat with a tool that runs in the client (a
// tool without `execute`): the SDK's own chat (AbstractChat, what useChat wraps) sends the tool's
// definition in the transport's `body` (`clientTools`), runs the tool in `onToolCall` when the stream
// shows its call, gives the outcome with addToolResult (ai 5) / addToolOutput (ai 6 and 7), and sends
// it back by itself (sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls).
// Usage: node client_tools.mjs <package: ai-5.0.0 | ai-5 | ai-6 | ai-7> <scenario> <base-url> <chatId> [text]
// Scenarios:
//   send    chat.sendMessage(text); the client tools' calls are answered; the reply as it ends
//   resume  a chat that knows nothing of the conversation (a page opened again) resumes the reply
//           waiting for the client (chat.resumeStream), answers the call it shows, and follows the
//           reply to its end
// Environment: CLIENT_TOOLS the definitions sent in the body (a JSON list of {name, description,
// parameters}); BODY more fields of the body (JSON, e.g. {"tools": [...]}, the conversation's tools);
// OUTPUTS a JSON object: tool name -> the output this client's run of it gives; ERRORS: tool name ->
// the errorText it fails with instead (state output-error: ai 5.0.277 and later). The client runs the
// tools these two name and leaves every other call to the server. AI_SDK_VERSION sets the
// X-AI-SDK-Version header.
// Prints one JSON line, the result: {calls (what onToolCall saw), messages, chunks (per response),
// status}; a thrown error prints {"error": message} and exits 1.
import { chatDriver, within } from "./chat_driver.mjs";

const [pkg, scenario, baseUrl, chatId, text = "hello"] = process.argv.slice(2);
const ai = await import(pkg);
const clientTools = JSON.parse(process.env.CLIENT_TOOLS || "[]");
const outputs = JSON.parse(process.env.OUTPUTS || "{}");
const errors = JSON.parse(process.env.ERRORS || "{}");
const { watchedTransport, responses, sent, MemoryChat } = chatDriver(ai, {
  baseUrl, version: process.env.AI_SDK_VERSION,
  body: { ...(clientTools.length ? { clientTools } : {}), ...JSON.parse(process.env.BODY || "{}") },
});

function shown(part) {
  if (part.type === "text") return { type: "text", text: part.text };
  if (part.type.startsWith("tool-") || part.type === "dynamic-tool") {
    const { type, toolCallId, state, input, output, errorText } = part;
    return { type, toolCallId, state, input, output, errorText };
  }
  return { type: part.type };
}

function messageOf(message) {
  return message && { id: message.id, role: message.role, parts: message.parts.map(shown),
                      metadata: message.metadata ?? null };
}

const calls = [];
let reachedTheEnd;
const ended = new Promise((resolve) => { reachedTheEnd = resolve; });

const chat = new MemoryChat({
  id: chatId,
  transport: watchedTransport,
  sendAutomaticallyWhen: ai.lastAssistantMessageIsCompleteWithToolCalls,
  onToolCall: ({ toolCall }) => {
    const { toolName, toolCallId, input } = toolCall;
    calls.push({ toolName, toolCallId, input });
    if (!(toolName in outputs) && !(toolName in errors)) return;  // a tool of the server's
    // Not awaited: the chat gives the output once the chunk is processed (awaiting would deadlock).
    if (toolName in errors) {
      chat.addToolOutput({ state: "output-error", tool: toolName, toolCallId, errorText: errors[toolName] });
    } else if (pkg.startsWith("ai-5")) {
      chat.addToolResult({ tool: toolName, toolCallId, output: outputs[toolName] });
    } else {
      chat.addToolOutput({ tool: toolName, toolCallId, output: outputs[toolName] });
    }
  },
  // The reply's end carries its metadata (a stream that stops for the client does not).
  onFinish: ({ message }) => { if (message.metadata?.status) reachedTheEnd(); },
  onError: (error) => reachedTheEnd(error),
});

try {
  if (scenario === "send") {
    await within(chat.sendMessage({ text }), "sendMessage");
  } else if (scenario === "resume") {
    await within(chat.resumeStream(), "resumeStream");
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
  const failed = await within(ended, "the reply's end");
  if (failed || chat.error) throw failed || chat.error;
  await chat.jobExecutor?.waitForIdle?.();
  console.log(JSON.stringify({
    status: chat.status, calls, messages: chat.messages.map(messageOf), chunks: responses,
    sent: sent.map(({ trigger, last }) => ({ trigger, last: messageOf(last) })),
  }));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.message ?? error), chunks: responses, calls }));
  process.exit(1);
}
