// The Vercel AI SDK v5 (`ai` with @ai-sdk/amazon-bedrock and @ai-sdk/openai, locked in
// tests/node) running a real tool loop against the emulator: generateText with one tool and
// stopWhen: stepCountIs(4). Every request body the SDK sends is recorded through its `fetch`
// option, so the test can check what step 2 carried (item_reference with a reasoning model).
//
//   node vercel.mjs URL '{"provider": "bedrock" | "openai-responses", "model": "..."}'
import { createRequire } from "node:module";

const require = createRequire(new URL("../../node/package.json", import.meta.url));
const { generateText, tool, stepCountIs } = require("ai");
const { createAmazonBedrock } = require("@ai-sdk/amazon-bedrock");
const { createOpenAI } = require("@ai-sdk/openai");
const { z } = require("zod");

const [url, specText] = process.argv.slice(2);
const spec = JSON.parse(specText || "{}");
const bodies = [];
const recordingFetch = async (input, init) => {
  if (init?.body) bodies.push(JSON.parse(init.body));
  return fetch(input, init);
};
const model =
  spec.provider === "bedrock"
    ? createAmazonBedrock({
        region: "us-east-1",
        accessKeyId: "AKIDEXAMPLE",
        secretAccessKey: "test-secret",
        baseURL: url,
        fetch: recordingFetch,
      })(spec.model)
    : createOpenAI({ baseURL: `${url}/v1`, apiKey: "sk-test", fetch: recordingFetch }).responses(
        spec.model,
      );
const out = { text: "", steps: 0, toolCalls: [], finishReason: null, usage: null, bodies, error: null };
try {
  const result = await generateText({
    model,
    prompt: "Weather for Tokyo?",
    tools: {
      get_weather: tool({
        description: "Get the current weather for a city.",
        inputSchema: z.object({ city: z.string() }),
        execute: async ({ city }) => ({ city, temp: 22, unit: "C" }),
      }),
    },
    stopWhen: stepCountIs(4),
    maxRetries: 0,
  });
  out.text = result.text;
  out.steps = result.steps.length;
  out.toolCalls = result.steps.flatMap((s) => s.toolCalls.map((c) => ({ name: c.toolName, input: c.input })));
  out.finishReason = result.finishReason;
  out.usage = result.totalUsage ?? null;
} catch (error) {
  out.error = { name: error?.name ?? String(error), message: String(error?.message ?? error) };
}
process.stdout.write(JSON.stringify(out) + "\n");
