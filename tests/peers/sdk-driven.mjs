// A real MCP client (the TypeScript SDK's Client over StreamableHTTPClientTransport) that a Rust
// test drives step by step, for scenarios where the test must act while a call is in flight
// (deciding a held call's approval, for instance).
// Usage: node sdk-driven.mjs TOKEN NAME=URL [NAME=URL ...]
// One client session per NAME, opened before anything else. Then one JSON command per stdin line:
//   {"id": "...", "via": NAME, "tool": "...", "arguments": {...}, "progress": true}
// starts a tools/call (with a progress token when "progress" is true) without waiting for it;
// each call's end is printed as one JSON line on stdout:
//   {"id": "...", "isError": bool, "text": "...", "meta": {...}, "progress": [..], "error": null | {...}}
// A line {"ready": [NAME, ...]} is printed once every session is open. End of stdin closes the
// sessions (DELETE) and exits once every started call has ended.
import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [token, ...targets] = process.argv.slice(2);
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

const sessions = new Map();
try {
  for (const target of targets) {
    const at = target.indexOf("=");
    const name = target.slice(0, at);
    const transport = new StreamableHTTPClientTransport(new URL(target.slice(at + 1)), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    });
    const client = new Client({ name: `gatehouse-sdk-driven-${name}`, version: "0.0.0" });
    await client.connect(transport);
    sessions.set(name, { client, transport });
  }
} catch (err) {
  print({ fatal: String(err?.stack ?? err) });
  process.exit(1);
}
print({ ready: [...sessions.keys()] });

async function call(command) {
  const { client } = sessions.get(command.via) ?? {};
  const progress = [];
  const out = { id: command.id, progress };
  if (!client) {
    out.error = { message: `no session named ${command.via}` };
    return out;
  }
  const options = { timeout: 120_000 };
  if (command.progress) {
    options.onprogress = (p) => progress.push(p);
    options.resetTimeoutOnProgress = true;
  }
  try {
    const result = await client.callTool(
      { name: command.tool, arguments: command.arguments ?? {} },
      undefined,
      options,
    );
    out.isError = result.isError ?? false;
    out.text = result.content?.[0]?.text ?? "";
    out.meta = result._meta ?? null;
    out.error = null;
  } catch (err) {
    out.error = { code: err.code, message: err.message };
  }
  return out;
}

const running = [];
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  running.push(call(command).then(print));
}
await Promise.all(running);
for (const { client, transport } of sessions.values()) {
  await transport.terminateSession().catch(() => {});
  await client.close();
}
