// The AWS SDK for JavaScript v3 (@aws-sdk/client-bedrock-runtime, locked in tests/node) with
// its DEFAULT request handler against the emulator. Since 3.798 that handler is
// NodeHttp2Handler: HTTP/2 with prior knowledge on http:// URLs, ALPN h2 on https://.
//
//   node bedrock.mjs URL '{"op": "converse-stream", "fault": "corrupt_crc", ...}'
//
// Prints one JSON line: {handler, events: [event names], text, stopReason, error: {name,
// message, status, attempts} | null}. Exit code 0 even when the call fails: the test reads
// the outcome from the JSON.
import { createRequire } from "node:module";

// the packages are installed (locked) in tests/node
const require = createRequire(new URL("../../node/package.json", import.meta.url));
const {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
} = require("@aws-sdk/client-bedrock-runtime");

const [url, specText] = process.argv.slice(2);
const spec = JSON.parse(specText || "{}");
// the default handler, only given a request timeout when the case needs one (a hang)
const handlerOptions = spec.requestTimeout ? { requestHandler: { requestTimeout: spec.requestTimeout } } : {};
const client = new BedrockRuntimeClient({
  region: "us-east-1",
  endpoint: url,
  credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "test-secret" },
  ...(spec.maxAttempts ? { maxAttempts: spec.maxAttempts } : {}),
  ...handlerOptions,
});
if (spec.fault) {
  client.middlewareStack.add(
    (next) => async (args) => {
      args.request.headers["x-callproof-fault"] = spec.fault;
      return next(args);
    },
    { step: "build", name: "callproofFault" },
  );
}
const messages = spec.messages || [
  { role: "user", content: [{ text: spec.prompt || "Weather for Tokyo?" }] },
];
const input = { modelId: spec.model || "amazon.nova-pro-v1:0", messages };
if (spec.tools) input.toolConfig = { tools: spec.tools };
const started = Date.now();
const out = {
  handler: client.config.requestHandler?.constructor?.name ?? null,
  events: [],
  text: "",
  stopReason: null,
  toolUses: [],
  error: null,
};
try {
  if (spec.op === "converse") {
    const response = await client.send(new ConverseCommand(input));
    out.events.push("response");
    out.stopReason = response.stopReason;
    for (const block of response.output?.message?.content ?? []) {
      if (block.text) out.text += block.text;
      if (block.toolUse) out.toolUses.push(block.toolUse);
    }
    out.attempts = response.$metadata?.attempts;
  } else {
    const response = await client.send(new ConverseStreamCommand(input));
    for await (const event of response.stream) {
      const name = Object.keys(event)[0];
      out.events.push(name);
      if (name === "contentBlockDelta" && event.contentBlockDelta.delta?.text) {
        out.text += event.contentBlockDelta.delta.text;
      }
      if (name === "messageStop") out.stopReason = event.messageStop.stopReason;
    }
  }
} catch (error) {
  out.error = {
    name: error?.name ?? String(error),
    message: String(error?.message ?? error),
    code: error?.code ?? null,
    status: error?.$metadata?.httpStatusCode ?? null,
    attempts: error?.$metadata?.attempts ?? null,
  };
}
out.elapsedMs = Date.now() - started;
process.stdout.write(JSON.stringify(out) + "\n");
client.destroy();
