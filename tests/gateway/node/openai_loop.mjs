// An unmodified openai-node (locked in tests/node) running a chat tool-use loop through the
// gateway, streamed or not, or one Responses call.
//
//   node openai_loop.mjs BASE_URL '{"api": "chat" | "responses", "stream": true, "fault": "..."}'
//
// Prints one JSON line: {turns: [{finish, text, toolCalls, servedBy}], error}.
import { createRequire } from "node:module";

const require = createRequire(new URL("../../node/package.json", import.meta.url));
const OpenAI = require("openai").default ?? require("openai");

const [baseURL, specText] = process.argv.slice(2);
const spec = JSON.parse(specText || "{}");
const headers = {};
if (spec.fault) headers["x-callproof-fault"] = spec.fault;
if (spec.mode) headers["x-callproof-mode"] = spec.mode;
const client = new OpenAI({ baseURL, apiKey: spec.key || "sk-test", maxRetries: 0, defaultHeaders: headers });
const model = spec.model || "moonshotai/kimi-k2.5";
const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Current weather for a city.",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  },
];
const out = { turns: [], error: null };
const messages = [{ role: "user", content: "Weather for Tokyo?" }];

async function chatTurn() {
  const turn = { finish: null, text: "", toolCalls: [], servedBy: null };
  if (spec.stream) {
    const { data: stream, response } = await client.chat.completions
      .create({ model, messages, tools, stream: true })
      .withResponse();
    turn.servedBy = response.headers.get("x-callproof-served-by");
    const calls = {};
    for await (const chunk of stream) {
      for (const choice of chunk.choices) {
        if (choice.finish_reason) turn.finish = choice.finish_reason;
        if (choice.delta?.content) turn.text += choice.delta.content;
        for (const tc of choice.delta?.tool_calls ?? []) {
          const c = (calls[tc.index] ??= { id: null, name: null, arguments: "" });
          c.id = tc.id ?? c.id;
          c.name = tc.function?.name ?? c.name;
          c.arguments += tc.function?.arguments ?? "";
        }
      }
    }
    turn.toolCalls = Object.values(calls);
  } else {
    const { data, response } = await client.chat.completions
      .create({ model, messages, tools })
      .withResponse();
    turn.servedBy = response.headers.get("x-callproof-served-by");
    const choice = data.choices[0];
    turn.finish = choice.finish_reason;
    turn.text = choice.message.content ?? "";
    turn.toolCalls = (choice.message.tool_calls ?? []).map((t) => ({
      id: t.id, name: t.function.name, arguments: t.function.arguments,
    }));
  }
  out.turns.push(turn);
  return turn;
}

try {
  if (spec.api === "responses") {
    const response = await client.responses.create({
      model,
      input: "Weather for Tokyo?",
      tools: [{ type: "function", ...tools[0].function }],
    });
    out.turns.push({
      finish: response.status,
      text: response.output_text,
      toolCalls: response.output.filter((i) => i.type === "function_call").map((i) => ({ id: i.call_id, name: i.name, arguments: i.arguments })),
      servedBy: null,
    });
  } else {
    for (let i = 0; i < 3; i++) {
      const turn = await chatTurn();
      if (turn.finish !== "tool_calls") break;
      messages.push({
        role: "assistant",
        content: null,
        tool_calls: turn.toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } })),
      });
      for (const c of turn.toolCalls) messages.push({ role: "tool", tool_call_id: c.id, content: '{"temp": 22}' });
    }
  }
} catch (error) {
  out.error = { name: error?.constructor?.name ?? String(error), message: String(error?.message ?? error), status: error?.status ?? null };
}
process.stdout.write(JSON.stringify(out) + "\n");
