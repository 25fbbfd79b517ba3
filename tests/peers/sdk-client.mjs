// A real MCP client (the TypeScript SDK's Client over StreamableHTTPClientTransport) driven by the
// Rust tests. Usage: node sdk-client.mjs URL [PLAN_JSON]
// PLAN_JSON: {"token"?: "...", "calls"?: [{"name": "...", "arguments": {...}}], "read"?: ["uri", ...]}
// Prints one JSON object on stdout: what the server said, for the test to assert on.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, planText] = process.argv.slice(2);
const plan = planText ? JSON.parse(planText) : {};
const headers = plan.token ? { Authorization: `Bearer ${plan.token}` } : {};

const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "gatehouse-sdk-peer", version: "0.0.0" });
const out = {};
try {
  await client.connect(transport);
  out.sessionId = transport.sessionId;
  out.protocolVersion = transport.protocolVersion;
  out.serverInfo = client.getServerVersion();
  out.capabilities = client.getServerCapabilities();
  await client.ping();
  out.tools = (await client.listTools()).tools;
  out.resources = (await client.listResources()).resources;
  out.resourceTemplates = (await client.listResourceTemplates()).resourceTemplates;
  out.calls = [];
  for (const call of plan.calls ?? []) {
    const result = await client.callTool({ name: call.name, arguments: call.arguments ?? {} });
    out.calls.push({ name: call.name, result });
  }
  out.reads = [];
  for (const uri of plan.read ?? []) {
    out.reads.push(await client.readResource({ uri }));
  }
  await transport.terminateSession();
  out.terminated = transport.sessionId === undefined;
  await client.close();
} catch (err) {
  out.error = String(err?.stack ?? err);
  process.stdout.write(JSON.stringify(out));
  process.exit(1);
}
process.stdout.write(JSON.stringify(out));
