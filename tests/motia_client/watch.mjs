// Watch one conversation with Motia's own Node client until its assistant reply finishes.
// Usage: node watch.mjs <ws-url> <conversationId> [group|item|emptied] [messageId]
// Prints one JSON line "ready" once subscribed (after the first sync), then one JSON line
// with the final state, and exits 0; exits 1 on timeout. `emptied` watches the group until
// it had items and has none left (the conversation was deleted). `group` also prints a "render"
// line with the reply's length at each change, as it happens, for a test to act on.
import { Stream } from "@motiadev/stream-client-node";

const [url, conversationId, mode = "group", messageId] = process.argv.slice(2);
const token = process.env.STREAMCHAT_TOKEN;
const stream = new Stream(url, token ? { protocols: ["Authorization", token] } : undefined);
const finished = (item) => item && item.from === "assistant" && ["completed", "error", "stopped"].includes(item.status);
let ready = false;
const renders = [];

const timer = setTimeout(() => {
  console.log(JSON.stringify({ type: "timeout", renders }));
  process.exit(1);
}, Number(process.env.WATCH_TIMEOUT_MS || 30000));

function done(state) {
  clearTimeout(timer);
  console.log(JSON.stringify({ type: "final", state, renders }));
  stream.close();
  process.exit(0);
}

if (mode === "item") {
  const sub = stream.subscribeItem("conversation", conversationId, messageId);
  sub.addChangeListener((item) => {
    if (!ready) { ready = true; console.log(JSON.stringify({ type: "ready" })); }
    if (item) renders.push(item.message.length);
    if (finished(item)) done(item);
  });
} else if (mode === "emptied") {
  const sub = stream.subscribeGroup("conversation", conversationId);
  let seen = 0;
  sub.addChangeListener((items) => {
    if (!ready) { ready = true; console.log(JSON.stringify({ type: "ready" })); }
    seen = Math.max(seen, items.length);
    renders.push(items.length);
    if (seen > 0 && items.length === 0) done(items);
  });
} else {
  const sub = stream.subscribeGroup("conversation", conversationId);
  sub.addChangeListener((items) => {
    if (!ready) { ready = true; console.log(JSON.stringify({ type: "ready" })); }
    const replies = items.filter((item) => item.from === "assistant");
    if (replies.length) {
      const length = replies[replies.length - 1].message.length;
      renders.push(length);
      console.log(JSON.stringify({ type: "render", length }));
    }
    if (replies.length && replies.every(finished)) done(items);
  });
}
