// The admin web app's journey in real Chromium (Debian's /usr/bin/chromium, driven by playwright-core):
// sign up, register the GenieACS demo upstream, see its tools, mint a grant, see the token and proxy URL.
// Usage: node admin-journey.mjs ADMIN_URL UPSTREAM_MCP_URL SCREENSHOT_DIR
// Prints "token <grant token>" and "journey ok"; exits non-zero with the reason on any failure.
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
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
  const copied = await page.evaluate(() => navigator.clipboard.readText()).catch(() => null);
  check(copied === null || copied === token, "the token was copied");
  await shot("5-grant-token");

  // Back on the server page the grant is listed by its prefix only.
  await page.getByRole("link", { name: "Done" }).click();
  await page.getByText(`${token.slice(0, 10)}…`).waitFor();
  check(!(await page.content()).includes(token), "the token is not shown again");

  // The audit log (empty until agents call through the gateway) and the policy editor.
  await page.getByRole("link", { name: "Audit log" }).click();
  await page.getByText("No events").waitFor();
  await shot("6-audit");
  await page.goBack();
  await page.getByRole("link", { name: "default" }).click();
  await page.getByText("Validate and publish").waitFor();
  await shot("7-policy");
  // A typo is refused, with the finding shown at its line.
  await page.locator('textarea[name="source"]').fill('{\n  "version": "1",\n  "default": "deny",\n  "tools": {"reboot_devise": {}}\n}');
  await page.getByRole("button", { name: "Validate and publish" }).click();
  await page.getByText("The policy was not published").waitFor();
  check(await page.locator("#line-4.has-finding").isVisible(), "the finding is shown at line 4");
  await shot("7b-policy-errors");
  await page.getByRole("link", { name: "Admin events" }).click();
  await page.getByText("grant.mint").waitFor();
  await shot("8-admin-events");

  console.log(`token ${token}`);
  console.log("journey ok");
} catch (e) {
  await shot("failure").catch(() => {});
  console.error(`journey failed at ${page.url()}: ${e.stack ?? e}`);
  process.exitCode = 1;
} finally {
  await context.close();
}
