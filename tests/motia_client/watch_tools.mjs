// Watch one conversation's tool calls with Motia's own Node client until its replies finish.
// Usage: node watch_tools.mjs <ws-url> <conversationId>
// Prints {"type":"ready"} once subscribed, {"type":"call", id, status} each time a tool call's status
// changes (as it happens, for a test to act on), then {"type":"final", items, statuses} with every
// status each call went through, and exits 0; exits 1 on timeout.
import { Stream } from "@motiadev/stream-client-node";

const [url, conversationId] = process.argv.slice(2);
const stream = new Stream(url);
const ended = ["completed", "error", "stopped"];
const statuses = {};
let ready = false;

const timer = setTimeout(() => {
  console.log(JSON.stringify({ type: "timeout", statuses }));
  process.exit(1);
}, Number(process.env.WATCH_TIMEOUT_MS || 30000));

const sub = stream.subscribeGroup("conversation", conversationId);
sub.addChangeListener((items) => {
  if (!ready) { ready = true; console.log(JSON.stringify({ type: "ready" })); }
  for (const item of items.filter((one) => one.from === "tool")) {
    const seen = (statuses[item.id] ||= []);
    if (seen[seen.length - 1] !== item.status) {
      seen.push(item.status);
      console.log(JSON.stringify({ type: "call", id: item.id, status: item.status }));
    }
  }
  const replies = items.filter((item) => item.from === "assistant");
  if (replies.length && replies.every((reply) => ended.includes(reply.status))) {
    clearTimeout(timer);
    console.log(JSON.stringify({ type: "final", items, statuses }));
    stream.close();
    process.exit(0);
  }
});
