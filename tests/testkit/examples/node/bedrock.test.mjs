// A Node test (node:test) against the emulator through `callproof emulate --env-file`.
// The AWS SDK for JavaScript v3 is used unmodified: `new BedrockRuntimeClient({})` reads
// AWS_ENDPOINT_URL_BEDROCK_RUNTIME, AWS_REGION and the credentials from the environment.
//
//   node --test bedrock.test.mjs        (CALLPROOF names the callproof command, if not on PATH)
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { BedrockRuntimeClient, ConverseCommand } from "@aws-sdk/client-bedrock-runtime";

const MESSAGES = [{ role: "user", content: [{ text: "What is the weather in Tokyo?" }] }];
let emulator;

before(async () => {
  // a fault plan (docs/faults.md): every call to the Mistral model is throttled
  writeFileSync("faults.toml", '[[rules]]\nmodel = "mistral.*"\nfault = "http_error:429"\n');
  emulator = spawn(
    process.env.CALLPROOF ?? "callproof",
    ["emulate", "--port", "0", "--preset", "fast", "--faults", "faults.toml",
     "--env-file", ".callproof.env"],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  // the first stdout line is the URL, printed once the env file is written
  await new Promise((resolve, reject) => {
    emulator.stdout.once("data", resolve);
    emulator.once("exit", (code) => reject(new Error(`callproof emulate exited with ${code}`)));
  });
  for (const line of readFileSync(".callproof.env", "utf8").trim().split("\n")) {
    const at = line.indexOf("=");
    process.env[line.slice(0, at)] = line.slice(at + 1);
  }
});

after(() => emulator.kill("SIGTERM"));

test("an unmodified client reaches the emulator", async () => {
  const client = new BedrockRuntimeClient({});
  const out = await client.send(
    new ConverseCommand({ modelId: "amazon.nova-pro-v1:0", messages: MESSAGES }),
  );
  assert.equal(out.stopReason, "end_turn");
  assert.ok(out.output.message.content.length > 0);
});

test("a throttle surfaces as ThrottlingException", async () => {
  const client = new BedrockRuntimeClient({ maxAttempts: 1 });
  await assert.rejects(
    client.send(
      new ConverseCommand({ modelId: "mistral.mistral-large-3-675b-instruct", messages: MESSAGES }),
    ),
    { name: "ThrottlingException" },
  );
});
