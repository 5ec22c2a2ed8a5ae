/**
 * Browser driver of tests/test_tier2_browser_legacy.py: an older UI workflow (saved before the
 * expert widgets moved to the Options nodes) loaded into the real ComfyUI frontend.
 *
 *   node legacy_driver.mjs <config.json>
 *
 * config: {baseUrl, chromium, userDataDir, workflow (the UI JSON), node (its type), timeoutMs}
 * Loads the workflow as the frontend's "open" does (app.loadGraphData), then reports the node's
 * widgets, what feeds its `options` input (type and widget values), the console's warnings and
 * errors, and the API prompt the Run button would queue (app.graphToPrompt). One JSON line on stdout.
 */
import fs from "node:fs";
import { finish, launch, setup } from "./chromium.mjs";

const { cfg, timeout, mark } = setup("legacy");
const ctx = await launch(cfg);
const consoleErrors = [];
const warnings = [];
let result = { ok: false };
try {
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text().slice(0, 500));
    if (m.type() === "warning" && m.text().includes("[FluxDrag]")) warnings.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(`pageerror: ${e.message}`));
  await page.goto(cfg.baseUrl);
  await page.waitForFunction(() => window.app?.graph && window.LiteGraph?.registered_node_types?.FluxDragAttentionDrag);
  mark("frontend_loaded");
  const workflow = JSON.parse(fs.readFileSync(cfg.workflow, "utf8"));
  const state = await page.evaluate(async ({ workflow, type }) => {
    await window.app.loadGraphData(workflow);
    await new Promise((r) => setTimeout(r, 300));
    const g = window.app.graph;
    const node = g._nodes.find((n) => n.type === type);
    const slot = node.inputs.findIndex((i) => i.name === "options");
    const link = slot >= 0 && node.inputs[slot].link != null ? g.links[node.inputs[slot].link] : null;
    const src = link ? g.getNodeById(link.origin_id) : null;
    const { output } = await window.app.graphToPrompt();
    return {
      widgets: Object.fromEntries(node.widgets.map((w) => [w.name, w.value])),
      options: src && { type: src.type, title: src.title, widgets: Object.fromEntries(src.widgets.map((w) => [w.name, w.value])) },
      prompt: output,
      nodeId: String(node.id),
    };
  }, { workflow, type: cfg.node });
  mark("loaded");
  result = { ok: true, ...state, warnings };
} catch (e) {
  result = { ok: false, error: String(e?.stack ?? e), warnings };
}
await finish(ctx, result, {}, consoleErrors);
