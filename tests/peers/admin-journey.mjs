// The admin web app's journey in real Chromium (Debian's /usr/bin/chromium, driven by playwright-core):
// sign up, register the GenieACS demo upstream, see its tools, mint a grant, copy the token and proxy URL,
// build a policy in the visual builder (kept in sync with the JSON both ways), try a call, publish,
// see the diff; then, as an agent, call through the gateway at the copied proxy URL with the
// TypeScript SDK client (an allowed call, a denied one, a rate-limited one); then find exactly those
// calls in the audit log: chart, live tail, filters, an event's detail and its rule in the policy,
// export, verify; then the organisation's pages, and an approval from the badge to the decided tab.
// Usage: node admin-journey.mjs ADMIN_URL UPSTREAM_MCP_URL SCREENSHOT_DIR
// Prints "token <grant token>" and "journey ok"; exits non-zero with the reason on any failure.
import { chromium } from "playwright-core";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [adminUrl, upstreamUrl, shots] = process.argv.slice(2);
if (!adminUrl || !upstreamUrl || !shots) {
  console.error("usage: node admin-journey.mjs ADMIN_URL UPSTREAM_MCP_URL SCREENSHOT_DIR");
  process.exit(2);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "gatehouse-chromium-")), {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1280, height: 900 },
  permissions: ["clipboard-read", "clipboard-write"],
  acceptDownloads: true,
});
context.setDefaultTimeout(15000);
const page = context.pages()[0] ?? (await context.newPage());
const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

try {
  // 1. Sign up.
  await page.goto(`${adminUrl}/signup`);
  await shot("1-signup");
  await page.getByLabel("Email").fill("noc-lead@acme-isp.example");
  await page.getByLabel("Password").fill("a long and careful passphrase");
  await page.getByLabel("Organisation name").fill("Acme ISP");
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.waitForURL(`${adminUrl}/servers`);
  check(await page.getByText("No servers yet").isVisible(), "the empty server list is shown");
  check(await page.getByText("Acme ISP").isVisible(), "the organisation is shown");
  await shot("2-servers-empty");

  // 2. Register the demo upstream, testing the connection first.
  await page.getByRole("link", { name: "Register a server" }).click();
  await page.getByLabel("Name", { exact: true }).fill("genieacs");
  await page.getByLabel("Upstream MCP URL").fill(upstreamUrl);
  await page.getByRole("button", { name: "Test connection" }).click();
  await page.getByText("12 tools").waitFor();
  check((await page.locator("code.tool-name").count()) === 12, "the test lists 12 tools");
  await shot("3-register-tested");
  await page.getByRole("button", { name: "Register", exact: true }).click();
  await page.waitForURL(/\/servers\/[0-9a-f-]{36}\?done=registered$/);

  // 3. Its tools, with their risk.
  await page.getByText("Server registered").waitFor();
  check((await page.locator("code.tool-name").count()) === 12, "the server page lists 12 pinned tools");
  for (const [tool, risk] of [["get_parameter", "read"], ["set_parameter", "write"], ["download_firmware", "execute"], ["delete_task", "destructive"]]) {
    const row = page.locator("tr", { has: page.locator("code.tool-name", { hasText: new RegExp(`^${tool}$`) }) });
    check((await row.locator(".badge").first().textContent()).trim() === risk, `${tool} is ${risk}`);
  }
  await page.locator("tr", { hasText: "delete_task" }).locator("summary").click();
  await page.getByText("is the first verb of the name").first().waitFor();
  await shot("4-server");

  // 4. Mint a grant: the token is shown once, with the proxy URL and the client config.
  await page.getByLabel("Label", { exact: true }).fill("noc-agent");
  await page.getByRole("button", { name: "Mint grant" }).click();
  await page.getByText("Copy the token now.").waitFor();
  const token = await page.locator("#grant-token").inputValue();
  check(/^ghg_[0-9A-Za-z]{44}$/.test(token), `a grant token is shown: ${token}`);
  const proxyUrl = await page.locator("#proxy-url").inputValue();
  check(/\/mcp\/[0-9a-f-]{36}$/.test(proxyUrl), `the proxy URL is shown: ${proxyUrl}`);
  const snippet = JSON.parse(await page.locator("#client-config").textContent());
  check(snippet.mcpServers.genieacs.url === proxyUrl, "the snippet carries the proxy URL");
  check(snippet.mcpServers.genieacs.headers.Authorization === `Bearer ${token}`, "the snippet carries the token");
  // With JavaScript, copy buttons appear and copy.
  const copy = page.locator('button.copy[data-copy="grant-token"]');
  check(await copy.isVisible(), "the copy button is shown when JavaScript runs");
  await copy.click();
  await page.waitForFunction(() => document.querySelector('button.copy[data-copy="grant-token"]').textContent !== "Copy");
  const copiedToken = await page.evaluate(() => navigator.clipboard.readText());
  check(copiedToken === token, "the token was copied");
  await page.locator('button.copy[data-copy="proxy-url"]').click();
  await page.waitForFunction(() => document.querySelector('button.copy[data-copy="proxy-url"]').textContent !== "Copy");
  const copiedUrl = await page.evaluate(() => navigator.clipboard.readText());
  check(copiedUrl === proxyUrl, `the proxy URL was copied: ${copiedUrl}`);
  await shot("5-grant-token");

  // Back on the server page the grant is listed by its prefix only.
  await page.getByRole("link", { name: "Done" }).click();
  await page.getByText(`${token.slice(0, 10)}…`).waitFor();
  check(!(await page.content()).includes(token), "the token is not shown again");

  // The audit log (empty until agents call through the gateway) and the policy editor.
  await page.getByRole("link", { name: "Audit log" }).click();
  await page.getByText("No events").waitFor();
  await shot("6-audit-empty");
  await page.goBack();
  await page.getByRole("link", { name: "default" }).click();
  await page.getByText("Validate and publish").waitFor();
  const editorUrl = page.url();
  const source = page.locator("#source");
  const setting = (tool) => page.locator(`li.tool-setting[data-tool="${tool}"]`);
  // The recommendation is pre-selected from each tool's risk.
  check(await setting("get_parameter").locator("input[type=radio][value=allow]").isChecked(), "reads are allowed");
  check(await setting("set_parameter").locator("input[type=radio][value=rate_limit]").isChecked(), "writes are rate-limited");
  check(await setting("delete_task").locator("input[type=radio][value=hide]").isChecked(), "destructive tools are hidden");
  check(!(await setting("get_parameter").locator(".limit-fields").isVisible()), "limit fields only for rate limits");
  await shot("7-policy");

  // A typo is flagged at its line as it is typed, and refused when published.
  await source.fill('{\n  "version": "1",\n  "default": "deny",\n  "tools": {"reboot_devise": {}}\n}');
  await page.locator("#line-4.has-finding").waitFor();
  await page.locator("#findings").getByText("did you mean").waitFor();
  await page.getByRole("button", { name: "Validate and publish" }).click();
  await page.getByText("The policy was not published").waitFor();
  check(await page.locator("#line-4.has-finding").isVisible(), "the finding is shown at line 4");
  await shot("7b-policy-errors");

  // The visual builder writes into the document as it is used...
  await page.goto(editorUrl);
  await setting("reboot_device").locator("label.seg", { hasText: "Require approval" }).click();
  await page.waitForFunction(() => /"reboot_device": \{\s*"action": "approve"/.test(document.querySelector("#source").value));
  await setting("download_firmware").locator("label.seg", { hasText: "Deny" }).click();
  await page.waitForFunction(() => /"download_firmware": \{\s*"action": "deny"/.test(document.querySelector("#source").value));
  await setting("set_parameter").locator("input[type=number]").fill("2");
  await page.waitForFunction(() => /"set_parameter": \{\s*"limits": \[\s*\{[^}]*"max": 2,/.test(document.querySelector("#source").value));
  // ...and follows the document when the JSON is edited by hand.
  const doc = JSON.parse(await source.inputValue());
  doc.tools.get_parameter = { action: "deny" };
  await source.fill(JSON.stringify(doc, null, 2));
  await page.waitForFunction(() => document.querySelector('li.tool-setting[data-tool="get_parameter"] input[type=radio][value=deny]')?.checked);
  await setting("get_parameter").locator("label.seg", { hasText: "Allow" }).click();
  await page.waitForFunction(() => /"get_parameter": \{\}/.test(document.querySelector("#source").value));
  await page.locator("#sync-state", { hasText: "In sync" }).waitFor();
  check(await page.locator("#findings").getByText("ready to publish").isVisible(), "the draft validates");
  await shot("7c-policy-builder");

  // Try a call against the draft: the decision and the rule, highlighted at its lines.
  await page.locator("#try-tool").selectOption("download_firmware");
  await page.locator("#try-args").fill('{"device_id": "00236A-1", "file_name": "fw-2.1.bin"}');
  await page.getByRole("button", { name: "Try", exact: true }).click();
  await page.locator(".try-result.try-deny").getByText("/tools/download_firmware/action").waitFor();
  await page.locator("#try-tool").selectOption("reboot_device");
  await page.getByRole("button", { name: "Try", exact: true }).click();
  await page.locator(".try-result.try-approval").getByText("Held for a human").waitFor();
  check((await page.locator("#gutter li.rule-hit").count()) >= 1, "the rule's lines are highlighted");
  await page.locator("#try").scrollIntoViewIfNeeded();
  await shot("7d-try-a-call");

  // Publish: version 2, then its changes against version 1.
  await page.getByLabel("What changed").fill("Reboots need an approval; firmware goes through change control");
  await page.getByRole("button", { name: "Validate and publish" }).click();
  await page.waitForURL(/done=published$/);
  await page.getByText("Published: grants that follow this policy").waitFor();
  await page.locator("table.versions tr", { hasText: "Reboots need an approval" }).getByRole("link", { name: "Changes" }).click();
  await page.getByText("Changes from version 1").waitFor();
  check((await page.locator("tr.diff-insert").count()) >= 3, "the diff shows added lines");
  check((await page.locator("tr.diff-delete").count()) >= 1, "the diff shows removed lines");
  await shot("7e-policy-diff");

  // 5. An agent calls through the gateway at the copied proxy URL with the copied token.
  const device = "00236A-SmartRG585-SMRT00236a42";
  const transport = new StreamableHTTPClientTransport(new URL(copiedUrl), {
    requestInit: { headers: { Authorization: `Bearer ${copiedToken}` } },
  });
  const agent = new Client({ name: "noc-agent", version: "1.0.0" });
  await agent.connect(transport);
  const listed = (await agent.listTools()).tools.map((t) => t.name);
  check(listed.includes("get_parameter") && !listed.includes("delete_task"), `hidden tools are not listed: ${listed}`);
  const text = (r) => (r.content ?? []).map((c) => c.text ?? "").join("");
  const read = await agent.callTool({ name: "get_parameter", arguments: { device_id: device, parameter_path: "InternetGatewayDevice.DeviceInfo.SoftwareVersion" } });
  check(!read.isError, `the read is allowed: ${text(read)}`);
  const firmware = await agent.callTool({ name: "download_firmware", arguments: { device_id: device, file_id: "fw-2.1.bin" } });
  check(firmware.isError && text(firmware).startsWith("[POLICY DENIED]"), `the firmware download is denied: ${text(firmware)}`);
  const writes = [];
  for (let i = 0; i < 3; i++) {
    writes.push(await agent.callTool({ name: "set_parameter", arguments: { device_id: device, parameter_values: '[["InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.SSID","Guest","xsd:string"]]' } }));
  }
  check(!writes[0].isError && !writes[1].isError, `two writes fit the limit: ${writes.map(text)}`);
  check(writes[2].isError && /^\[POLICY DENIED\] rate limit .* reached, retry after/.test(text(writes[2])), `the third write is rate-limited: ${text(writes[2])}`);
  await transport.terminateSession();
  await agent.close();

  // 6. The audit log holds exactly those calls, once the ingester stored them: the chart, live
  // tail, filters.
  await page.getByRole("link", { name: "Audit log" }).click();
  const auditUrl = page.url();
  const rows = () => page.locator("#events tr");
  await page.goto(`${auditUrl}?tool=set_parameter`);
  for (let i = 0; i < 50 && (await rows().count()) < 3; i++) {
    await page.waitForTimeout(200);
    await page.reload();
  }
  await page.goto(auditUrl);
  check((await rows().count()) > 0, "the stored events are listed");
  check((await page.locator("svg.chart-svg rect.bar").count()) > 0, "the chart has bars");
  check(await page.locator(".legend").getByText("rate limited").isVisible(), "the legend names the decisions");
  await page.getByRole("button", { name: "Live tail: off" }).click();
  await page.locator("#tail-state", { hasText: "Live" }).waitFor();
  await shot("8-audit");
  await page.getByRole("button", { name: "Live tail: on" }).click();
  // Filtered by identity, tool and decision, each call is there once.
  const filtered = async (tool, decision) => {
    await page.goto(auditUrl);
    await page.locator("#audit-filters input[name=identity]").fill("noc-agent");
    await page.locator("#audit-filters input[name=tool]").fill(tool);
    await page.locator("#audit-filters select[name=decision]").selectOption(decision);
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(new RegExp(`tool=${tool}.*decision=${decision}|decision=${decision}.*tool=${tool}`));
    return rows().count();
  };
  check((await filtered("get_parameter", "allow")) === 1, "one allowed read");
  check((await filtered("download_firmware", "deny")) === 1, "one denied firmware download");
  check((await filtered("set_parameter", "allow")) === 2, "two allowed writes");
  check((await filtered("set_parameter", "rate_limited")) === 1, "one rate-limited write");
  check(await rows().first().getByText(/^rate limit `set_parameter` \(2 per minute/).isVisible(), "the rate-limited row says why");
  await shot("8a-audit-filtered");
  await page.goto(auditUrl);
  await page.locator("#audit-filters select[name=decision]").selectOption("deny");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/decision=deny/);
  const decisions = await page.locator("#events .badge").allTextContents();
  check(decisions.length > 0 && decisions.every((d) => d === "deny"), `only denials are listed: ${decisions}`);

  // Export the filter as CSV and JSON Lines.
  const [csv] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "CSV", exact: true }).click()]);
  const csvText = readFileSync(await csv.path(), "utf8");
  const csvLines = csvText.trim().split("\r\n");
  check(csvLines[0].startsWith("occurred_at,audit_event_id,sequence"), "the CSV has its header");
  check(csvLines.length === decisions.length + 1, `the CSV holds the filtered events: ${csvLines.length - 1}`);
  const [jsonl] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "JSON Lines" }).click()]);
  const records = readFileSync(await jsonl.path(), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  check(records.length === decisions.length && records.every((r) => r.decision === "deny"), "the JSON Lines hold the filtered events");

  // An event in full, and its rule in the policy version that decided.
  await page.locator("#events tr").first().locator("a").first().click();
  await page.getByText("Place in the chain").waitFor();
  await shot("8b-audit-event");
  await page.locator("#rule-link").click();
  await page.getByText("is highlighted below").waitFor();
  check((await page.locator(".source-lines li.rule-hit").count()) >= 1, "the rule is highlighted in the policy");
  await shot("8c-policy-rule");

  // Verify the hash chain.
  await page.getByRole("link", { name: "Audit log" }).click();
  await page.getByRole("link", { name: "Verify integrity" }).click();
  await page.getByText("has not been verified yet").waitFor();
  await page.getByRole("button", { name: "Verify now" }).click();
  // The run goes on in the background; its page refreshes itself until it finished.
  await page.getByText("Intact: all").waitFor();
  await shot("8d-audit-verify");

  await page.getByRole("link", { name: "Admin events" }).click();
  await page.getByText("grant.mint").waitFor();
  await shot("9-admin-events");

  // 7. The organisation: members, an invitation link (shown once), an API key (shown once), the
  // account, and signing out and in again.
  await page.getByRole("link", { name: "Members", exact: true }).click();
  await page.locator("main").getByText("noc-lead@acme-isp.example").waitFor();
  await shot("10-members");
  await page.getByRole("link", { name: "Invite people" }).click();
  await page.getByLabel("Email").fill("field-tech@acme-isp.example");
  await page.getByLabel("Role").selectOption("viewer");
  await page.getByRole("button", { name: "Create invitation link" }).click();
  await page.getByText("Copy the link now").waitFor();
  check((await page.locator("#invitation-link").inputValue()).includes("/join/ghi_"), "the invitation link is shown");
  await shot("10b-invitation-link");
  await page.getByRole("link", { name: "Done" }).click();
  await page.getByText("field-tech@acme-isp.example").waitFor();
  await shot("10c-invitations");
  await page.getByRole("link", { name: "API keys" }).click();
  await page.getByLabel("Name").fill("ci-deploy");
  await page.getByLabel("Role").selectOption("policy_manager");
  await page.getByRole("button", { name: "Mint key" }).click();
  await page.getByText("Copy the key now.").waitFor();
  check(/^gha_[0-9A-Za-z]{44}$/.test(await page.locator("#api-key").inputValue()), "an API key is shown");
  await shot("11-api-key");
  await page.getByRole("link", { name: "Done" }).click();
  await page.locator("main").getByText("ci-deploy").waitFor();
  await shot("11b-api-keys");
  // 8. A call held for a human (the test opens one for the grant, as the gateway does): the badge
  // counts it, the queue lists it, a comment approves it, and it moves to the decided tab.
  await page.goto(`${adminUrl}/servers`);
  const badge = page.locator(".mainnav .nav-count");
  for (let i = 0; i < 50 && !(await badge.isVisible()); i++) {
    await page.waitForTimeout(200);
    await page.reload();
  }
  check((await badge.textContent()).trim() === "1", "the badge counts one pending approval");
  check((await badge.getAttribute("aria-label")) === "1 pending", "the badge says what it counts");
  await page.locator(".mainnav").getByRole("link", { name: /^Approvals/ }).click();
  await page.locator("#approvals code.tool-name", { hasText: "reboot_device" }).waitFor();
  check(await page.locator("#approvals").getByText("noc-agent", { exact: true }).isVisible(), "the queue names the identity");
  await shot("11c-approvals");
  await page.locator("#approvals").getByRole("link", { name: /^Review/ }).click();
  await page.locator("#arguments").getByText(device).waitFor();
  check(await page.locator("#arguments").getByText("[REDACTED]").isVisible(), "redacted values stay redacted");
  await page.getByLabel("Comment").fill("Maintenance window, ticket NOC-4711");
  await shot("11d-approval");
  await page.getByRole("button", { name: "Approve", exact: true }).click();
  await page.waitForURL(/done=approved$/);
  await page.getByText("Approved. The held call goes through").waitFor();
  check(await page.getByText("Maintenance window, ticket NOC-4711").isVisible(), "the comment is kept");
  check(!(await badge.isVisible()), "no badge once nothing waits");
  await shot("11e-approval-approved");
  await page.goto(`${adminUrl}/approvals`);
  await page.getByText("No approvals waiting").waitFor();
  await page.locator("nav.tabs").getByRole("link", { name: "Decided" }).click();
  await page.locator("#approvals .badge", { hasText: "approved" }).waitFor();
  check(await page.locator("#approvals").getByText("by noc-lead@acme-isp.example").isVisible(), "the decider is named");
  await shot("11f-approvals-decided");
  // The webhook for new approvals: its secret is shown once.
  await page.getByRole("link", { name: "Webhook for new approvals" }).click();
  await page.getByText("No webhook is set").waitFor();
  await page.getByLabel("Webhook URL").fill("https://chat.acme-isp.example/hooks/gatehouse");
  await page.getByRole("button", { name: "Set webhook" }).click();
  await page.getByText("Copy the secret now.").waitFor();
  const webhookSecret = await page.locator("#webhook-secret").inputValue();
  check(/^whsec_[A-Za-z0-9_-]{43}$/.test(webhookSecret), `a webhook secret is shown: ${webhookSecret}`);
  await shot("11g-webhook-secret");
  await page.getByRole("link", { name: "Done" }).click();
  await page.locator("#current").getByText("https://chat.acme-isp.example/hooks/gatehouse").waitFor();
  check(!(await page.content()).includes(webhookSecret), "the secret is not shown again");
  await shot("11h-webhook");

  await page.getByRole("link", { name: "noc-lead@acme-isp.example" }).click();
  await page.getByRole("button", { name: "Change password" }).waitFor();
  await shot("12-account");
  await page.getByRole("button", { name: "Log out" }).click();
  await page.goto(`${adminUrl}/login`);
  await shot("13-login");
  await page.getByLabel("Email").fill("noc-lead@acme-isp.example");
  await page.getByLabel("Password").fill("a long and careful passphrase");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(`${adminUrl}/servers`);

  console.log(`token ${token}`);
  console.log("journey ok");
} catch (e) {
  await shot("failure").catch(() => {});
  console.error(`journey failed at ${page.url()}: ${e.stack ?? e}`);
  process.exitCode = 1;
} finally {
  await context.close();
}
