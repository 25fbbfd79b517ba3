// A real MCP client (the TypeScript SDK) through the gateway in front of server-everything, with
// the sampling capability: the server's sampling/createMessage request travels to the client on
// the call's SSE stream and the client's answer travels back through the gateway.
// Usage: node gateway-sampling.mjs URL TOKEN. Prints one JSON object.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, token] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client(
  { name: "gatehouse-gateway-sampling", version: "0.0.0" },
  { capabilities: { sampling: {} } },
);
const out = { sampled: [] };
client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
  out.sampled.push(request.params.messages[0]?.content?.text ?? "");
  return { model: "canned", role: "assistant", content: { type: "text", text: "canned answer 42" } };
});
try {
  await client.connect(transport);
  out.tools = (await client.listTools()).tools.map((t) => t.name);
  const echo = await client.callTool({ name: "echo", arguments: { message: "hello through the gateway" } });
  out.echo = echo.content?.[0]?.text ?? "";
  const sampling = await client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "ping", maxTokens: 5 } });
  out.sampling = sampling.content?.[0]?.text ?? "";
  try {
    await client.callTool({ name: "get-env", arguments: {} });
    out.getEnv = { error: null };
  } catch (err) {
    out.getEnv = { error: { code: err.code, message: err.message } };
  }
  await transport.terminateSession();
  await client.close();
} catch (err) {
  out.error = String(err?.stack ?? err);
  process.stdout.write(JSON.stringify(out));
  process.exit(1);
}
process.stdout.write(JSON.stringify(out));
