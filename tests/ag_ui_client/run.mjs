// Drives AG-UI's published client, @ag-ui/client's HttpAgent, against a running streamchat server:
// its runAgent (its transport, its event verifier and its reducer of messages) as CopilotKit uses it.
//
//   node run.mjs <scenario> <baseUrl> <threadId> [text]
//
// Prints one JSON line per event the agent applied ({"event": {...}}), lines of its own ({"cut": id},
// {"resumed": id}), and last {"result": {...}}: the agent's messages and what each run left pending.
//
// Scenarios:
//   text      one run on the user's message
//   approval  a run that ends with interrupts; a second run resumes it, approving each
//   frontend  a run offered the front-end tool `get_weather`; the client answers its call with a `tool`
//             message and runs again, as CopilotKit does
//   cut       one run whose connection is cut after its first TEXT_MESSAGE_CONTENT; the stream goes on from
//             GET /ag-ui/{threadId}/runs/{runId}/events with Last-Event-ID, spliced into the same response,
//             so the agent reads one stream (its verifier refuses an event twice or out of order)
import { HttpAgent, buildResumeArray } from "@ag-ui/client";

const [scenario, base, threadId, text = "hello"] = process.argv.slice(2);
const headers = process.env.STREAMCHAT_KEY ? { Authorization: `Bearer ${process.env.STREAMCHAT_KEY}` } : {};
const say = (line) => process.stdout.write(JSON.stringify(line) + "\n");

// A fetch whose response body is the POST's stream up to the cut, then the resumed stream.
function resumingFetch(cutWhen) {
  return async (url, init) => {
    const runId = JSON.parse(init.body).runId;
    const first = await fetch(url, init);
    if (!first.ok) return first;
    const decoder = new TextDecoder();
    const encoder = new TextEncoder();
    const body = new ReadableStream({
      async start(controller) {
        let reader = first.body.getReader();
        let buffer = "";
        let lastId = null;
        let cut = false;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end + 2);
            buffer = buffer.slice(end + 2);
            const id = /^id: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (id) lastId = id;
            controller.enqueue(encoder.encode(block));
            if (!cut && data && cutWhen(JSON.parse(data))) {
              cut = true;
              await reader.cancel(); // the connection closes here, mid-run
              say({ cut: lastId });
              const again = await fetch(`${base}/ag-ui/${threadId}/runs/${runId}/events`,
                                        { headers: { ...headers, "Last-Event-ID": lastId } });
              if (!again.ok) throw new Error(`resume: HTTP ${again.status}: ${await again.text()}`);
              say({ resumed: lastId });
              reader = again.body.getReader();
              buffer = ""; // what the cut connection had sent past the last whole frame
              break;
            }
          }
        }
        controller.close();
      },
    });
    return new Response(body, { status: first.status, headers: first.headers });
  };
}

const cutting = scenario === "cut";
const agent = new HttpAgent({
  url: `${base}/ag-ui`, threadId, headers,
  ...(cutting ? { fetch: resumingFetch((event) => event.type === "TEXT_MESSAGE_CONTENT") } : {}),
});
agent.subscribe({ onEvent: ({ event }) => { say({ event }); } });

const runs = [];
async function run(parameters) {
  let finished = null;
  const { newMessages } = await agent.runAgent(parameters, {
    onRunFinishedEvent: (params) => {
      finished = { outcome: params.outcome, pendingToolCallIds: params.pendingToolCallIds ?? [] };
    },
    onRunFailed: ({ error }) => { throw error; },
  });
  runs.push({ finished, newMessages: newMessages.map((message) => message.id),
              pendingInterrupts: agent.pendingInterrupts });
  return finished;
}

const WEATHER = {
  name: "get_weather", description: "The weather in a city, as the user's device reports it.",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};

agent.addMessage({ id: `client-${Date.now()}`, role: "user", content: text });
if (scenario === "text" || scenario === "cut") {
  await run({ runId: `run-${Date.now()}` });
} else if (scenario === "approval") {
  await run({ runId: "first" });
  const answers = Object.fromEntries(agent.pendingInterrupts.map(
    (interrupt) => [interrupt.id, { status: "resolved", payload: { approved: true } }]));
  await run({ runId: "second", resume: buildResumeArray(agent.pendingInterrupts, answers) });
} else if (scenario === "frontend") {
  const finished = await run({ runId: "asks", tools: [WEATHER] });
  for (const id of finished.pendingToolCallIds) {
    const call = agent.messages.flatMap((message) => message.toolCalls ?? []).find((c) => c.id === id);
    const { city } = JSON.parse(call.function.arguments);
    agent.addMessage({ id: `result-${id}`, role: "tool", toolCallId: id,
                       content: JSON.stringify({ city, sky: "clear", celsius: 21 }) });
  }
  await run({ runId: "answers", tools: [WEATHER] });
} else {
  throw new Error(`unknown scenario ${scenario}`);
}
say({ result: { messages: agent.messages, runs } });
