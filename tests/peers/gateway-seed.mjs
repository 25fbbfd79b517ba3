// Issue 5's seed scenario driven by a real MCP client (the TypeScript SDK's Client over
// StreamableHTTPClientTransport) through the gateway. Usage: node gateway-seed.mjs URL TOKEN [CALLS]
// Prints one JSON object: the tools listed, each retry_task result, and what reboot_device gave.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token, callsText] = process.argv.slice(2);
const calls = Number(callsText ?? "31");
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "gatehouse-gateway-seed", version: "0.0.0" });
const out = { retry: [] };
try {
  await client.connect(transport);
  out.sessionId = transport.sessionId;
  out.tools = (await client.listTools()).tools.map((t) => t.name);
  for (let i = 0; i < calls; i++) {
    const result = await client.callTool({ name: "retry_task", arguments: { task_id: `sdk-${i}` } });
    out.retry.push({ isError: result.isError ?? false, text: result.content?.[0]?.text ?? "", meta: result._meta ?? null });
  }
  try {
    await client.callTool({ name: "reboot_device", arguments: { device_id: "00236A-SmartRG585-SMRT00236a42" } });
    out.reboot = { error: null };
  } catch (err) {
    out.reboot = { error: { code: err.code, message: err.message } };
  }
  await transport.terminateSession();
  await client.close();
} catch (err) {
  out.error = String(err?.stack ?? err);
  process.stdout.write(JSON.stringify(out));
  process.exit(1);
}
process.stdout.write(JSON.stringify(out));
