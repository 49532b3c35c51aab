// Drive one version of the Vercel AI SDK against streamchat's tool calls, through the SDK's own chat
// (AbstractChat, what useChat wraps) or its transport, and print what the client assembled.
// Usage: node tools.mjs <package: ai-5.0.0 | ai-5 | ai-6 | ai-7> <scenario> <base-url> <chatId> [text]
// Scenarios:
//   send          chat.sendMessage(text); the reply as the chat holds it when the request ends
//   approve, deny send; the chat stops at the approval requests; chat.addToolApprovalResponse answers
//                 each (approved, or denied with REASON; DECISIONS="approve,deny" answers them in turn),
//                 and the chat sends the answers by itself (sendAutomaticallyWhen); the reply as it ends
//   send-abort    the transport's sendMessages, aborted after ABORT_AFTER_CHUNK (a chunk type) has come
//                 ABORT_AFTER times, then reconnectToStream, read to its end (readUIMessageStream)
//   resume        reconnectToStream only (a reader joining a reply another client started), read to its end
// AI_SDK_VERSION sets the X-AI-SDK-Version header. Each result is one JSON line; approve/deny print
// {"paused": ...} first, send-abort and resume {"reconnected": bool} as soon as the reconnect is answered.
// A thrown error prints {"error": message} and exits 1.
import { chatDriver, within } from "./chat_driver.mjs";

const [pkg, scenario, baseUrl, chatId, text = "hello"] = process.argv.slice(2);
const ai = await import(pkg);
const { transport, watchedTransport, tapped, responses, MemoryChat } = chatDriver(
  ai, { baseUrl, version: process.env.AI_SDK_VERSION });

// A part as the test compares it: what it shows, without the SDK's bookkeeping.
function shown(part) {
  if (part.type === "text") return { type: "text", text: part.text };
  if (part.type.startsWith("tool-") || part.type === "dynamic-tool") {
    const { type, toolCallId, state, input, rawInput, output, errorText, approval } = part;
    return { type, toolCallId, state, input, rawInput, output, errorText, approval };
  }
  return { type: part.type };
}

function messageOf(message) {
  if (!message) return null;
  return { id: message.id, role: message.role, parts: message.parts.map(shown), metadata: message.metadata ?? null };
}

async function chatScenario() {
  let finished;
  const chat = new MemoryChat({
    id: chatId,
    transport: watchedTransport,
    sendAutomaticallyWhen: ai.lastAssistantMessageIsCompleteWithApprovalResponses,
    onFinish: () => finished?.(),
  });
  await within(chat.sendMessage({ text }), "sendMessage");
  if (chat.error) throw chat.error;
  const result = { status: chat.status };
  if (scenario !== "send") {
    const last = chat.messages[chat.messages.length - 1];
    const waiting = last.parts.filter((part) => part.state === "approval-requested");
    console.log(JSON.stringify({ paused: messageOf(last), chunks: responses[0] }));
    if (waiting.length === 0) throw new Error("no approval was requested");
    const done = new Promise((resolve) => { finished = resolve; });
    const decisions = (process.env.DECISIONS || "").split(",").filter(Boolean);
    for (const [index, part] of waiting.entries()) {
      const approved = (decisions[index] ?? scenario) === "approve";
      await chat.addToolApprovalResponse({
        id: part.approval.id, approved, reason: approved ? undefined : process.env.REASON || undefined,
      });
    }
    await within(done, "the reply after the approval answers");
    if (chat.error) throw chat.error;
    result.status = chat.status;
  }
  result.messages = chat.messages.map(messageOf);
  result.chunks = responses;
  return result;
}

async function abortAndReconnect() {
  const controller = new AbortController();
  const stopType = process.env.ABORT_AFTER_CHUNK || "tool-input-delta";
  const stopCount = Number(process.env.ABORT_AFTER || 1);
  const stream = await transport.sendMessages({
    chatId, messages: [{ id: ai.generateId(), role: "user", parts: [{ type: "text", text }] }],
    trigger: "submit-message", messageId: undefined, abortSignal: controller.signal,
  });
  const before = [];
  let count = 0;
  const reader = stream.getReader();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      before.push(value.type);
      if (value.type === stopType && ++count >= stopCount) {
        controller.abort();
        break;
      }
    }
  } catch (error) {
    if (!controller.signal.aborted) throw error;
  }
  return { before, ...await reconnect() };
}

// The reply in progress, from its beginning, as the chat's resume reads it.
async function reconnect() {
  const again = await transport.reconnectToStream({ chatId });
  console.log(JSON.stringify({ reconnected: again !== null }));
  if (again === null) return { resumed: null };
  let message;
  for await (const snapshot of ai.readUIMessageStream({ stream: tapped(again), terminateOnError: true })) {
    message = snapshot;
  }
  return { resumed: messageOf(message), chunks: responses[0] };
}

try {
  let result;
  if (["send", "approve", "deny"].includes(scenario)) result = await chatScenario();
  else if (scenario === "send-abort") result = await abortAndReconnect();
  else if (scenario === "resume") result = await reconnect();
  else throw new Error(`unknown scenario ${scenario}`);
  console.log(JSON.stringify(result));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.message ?? error), chunks: responses }));
  process.exit(1);
}
