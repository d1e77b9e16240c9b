// openai-node (the `openai` package, locked in tests/node) against the emulator's OpenAI routes.
//
//   node openai.mjs URL '{"api": "chat" | "responses", "model": "...", "fault": "..."}'
//
// Prints one JSON line: {events: [types], text, finish, usage, requestId, error}.
import { createRequire } from "node:module";

const require = createRequire(new URL("../../node/package.json", import.meta.url));
const OpenAI = require("openai").default ?? require("openai");

const [url, specText] = process.argv.slice(2);
const spec = JSON.parse(specText || "{}");
const client = new OpenAI({
  baseURL: `${url}/v1`,
  apiKey: "sk-test",
  maxRetries: spec.maxRetries ?? 0,
  timeout: 20000,
  defaultHeaders: spec.fault ? { "x-callproof-fault": spec.fault } : {},
});
const out = { events: [], text: "", finish: null, usage: null, requestId: null, error: null };
const prompt = spec.prompt || "Hello there, what can you do?";
try {
  if (spec.api === "responses") {
    const stream = await client.responses.create({ model: spec.model, input: prompt, stream: true });
    for await (const event of stream) {
      out.events.push(event.type);
      if (event.type === "response.output_text.delta") out.text += event.delta;
      if (event.type === "response.completed" || event.type === "response.failed") {
        out.finish = event.response.status;
        out.usage = event.response.usage ?? null;
      }
    }
  } else {
    const { data: stream, response } = await client.chat.completions
      .create({
        model: spec.model,
        messages: [{ role: "user", content: prompt }],
        stream: true,
        stream_options: spec.includeUsage ? { include_usage: true } : undefined,
      })
      .withResponse();
    out.requestId = response.headers.get("x-request-id");
    for await (const chunk of stream) {
      out.events.push("chunk");
      const choice = chunk.choices?.[0];
      if (choice?.delta?.content) out.text += choice.delta.content;
      if (choice?.finish_reason) out.finish = choice.finish_reason;
      if (chunk.usage) out.usage = chunk.usage;
    }
  }
} catch (error) {
  out.error = {
    name: error?.constructor?.name ?? String(error),
    message: String(error?.message ?? error),
    status: error?.status ?? null,
  };
}
process.stdout.write(JSON.stringify(out) + "\n");
