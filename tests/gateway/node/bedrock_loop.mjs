// An unmodified AWS SDK for JavaScript v3 (@aws-sdk/client-bedrock-runtime, locked in
// tests/node) with its DEFAULT request handler (NodeHttp2Handler: HTTP/2 with prior knowledge
// on http://, ALPN h2 on https://) running a tool-use loop through the gateway.
//
//   node bedrock_loop.mjs URL '{"op": "converse-stream", "model": "...", "fault": "..."}'
//
// Prints one JSON line: {handler, turns: [{stopReason, text, toolUses, events, headers}],
// error}. Exit code 0 even when a call fails: the test reads the outcome from the JSON.
import { createRequire } from "node:module";

const require = createRequire(new URL("../../node/package.json", import.meta.url));
const {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
} = require("@aws-sdk/client-bedrock-runtime");

const [url, specText] = process.argv.slice(2);
const spec = JSON.parse(specText || "{}");
const client = new BedrockRuntimeClient({
  region: "us-east-1",
  endpoint: url,
  credentials: {
    accessKeyId: spec.akid || "AKIDEXAMPLE",
    secretAccessKey: spec.secret || "test-secret",
  },
  maxAttempts: 1,
});
const seen = [];
client.middlewareStack.add(
  (next) => async (args) => {
    if (spec.fault) args.request.headers["x-callproof-fault"] = spec.fault;
    if (spec.mode) args.request.headers["x-callproof-mode"] = spec.mode;
    const result = await next(args);
    seen.push(result.response?.headers ?? {});
    return result;
  },
  { step: "build", name: "callproofHeaders" },
);
const tools = [
  {
    toolSpec: {
      name: "get_weather",
      description: "Current weather for a city.",
      inputSchema: {
        json: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
      },
    },
  },
];
const model = spec.model || "moonshotai.kimi-k2.5";
const messages = [{ role: "user", content: [{ text: "Weather for Tokyo?" }] }];
const out = { handler: client.config.requestHandler?.constructor?.name ?? null, turns: [], error: null };

async function turn() {
  const input = { modelId: model, messages, toolConfig: { tools } };
  const result = { stopReason: null, text: "", toolUses: [], events: [], headers: null };
  const content = [];
  if (spec.op === "converse") {
    const response = await client.send(new ConverseCommand(input));
    result.stopReason = response.stopReason;
    for (const block of response.output?.message?.content ?? []) {
      if (block.text) result.text += block.text;
      if (block.toolUse) result.toolUses.push(block.toolUse);
      if (block.text || block.toolUse) content.push(block);
    }
  } else {
    const response = await client.send(new ConverseStreamCommand(input));
    const tools = {};
    for await (const event of response.stream) {
      const name = Object.keys(event)[0];
      result.events.push(name);
      if (name === "contentBlockStart") {
        const s = event.contentBlockStart;
        tools[s.contentBlockIndex] = { ...s.start.toolUse, input: "" };
      } else if (name === "contentBlockDelta") {
        const d = event.contentBlockDelta;
        if (d.delta?.text) result.text += d.delta.text;
        if (d.delta?.toolUse) tools[d.contentBlockIndex].input += d.delta.toolUse.input;
      } else if (name === "messageStop") {
        result.stopReason = event.messageStop.stopReason;
      }
    }
    if (result.text) content.push({ text: result.text });
    for (const t of Object.values(tools)) {
      const use = { toolUseId: t.toolUseId, name: t.name, input: t.input ? JSON.parse(t.input) : {} };
      result.toolUses.push(use);
      content.push({ toolUse: use });
    }
  }
  result.headers = seen[seen.length - 1] ?? null;
  out.turns.push(result);
  return content;
}

try {
  for (let i = 0; i < 3; i++) {
    const content = await turn();
    const last = out.turns[out.turns.length - 1];
    if (last.stopReason !== "tool_use") break;
    messages.push({ role: "assistant", content });
    messages.push({
      role: "user",
      content: last.toolUses.map((u) => ({
        toolResult: { toolUseId: u.toolUseId, content: [{ json: { temp: 22 } }], status: "success" },
      })),
    });
  }
} catch (error) {
  out.error = {
    name: error?.name ?? String(error),
    message: String(error?.message ?? error),
    status: error?.$metadata?.httpStatusCode ?? null,
  };
}
process.stdout.write(JSON.stringify(out) + "\n");
client.destroy();
