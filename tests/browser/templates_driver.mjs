/**
 * Browser driver of tests/test_tier2_browser_templates.py: the pack's templates in the real ComfyUI
 * frontend, in headless Chromium (playwright-core drives the system Chromium; no download).
 *
 *   node templates_driver.mjs <config.json>
 *
 * config: {baseUrl, chromium, userDataDir, pack, templates: {name: nodeCount}, toyTemplate,
 *          drag: [hx, hy, tx, ty] (fractions of the image), shotsDir, timeoutMs, runTimeoutMs}
 * Prints one JSON line (the result) on stdout; progress goes to stderr.
 *
 * For every template, as a user would: open the template browser (the Templates command), pick
 * the pack's category, read the cards' thumbnails, click the template's card, then record what
 * the page shows: open dialogs, console errors and failed requests since the click, the node
 * boxes, and for a Drag Editor its picture (loaded before any run), its size on screen at 100 %
 * zoom, and one mouse drag drawn on it straight away (no click on the node first). In the first
 * layout with an editor a text node is then put over the canvas and a second drag is drawn
 * through it. Last, the toy LazyDrag template is queued (what the Run button calls) and its
 * Save Image node must show the result.
 */
import fs from "node:fs";
import path from "node:path";
import { finish, launch, setup } from "./chromium.mjs";

const { cfg, timeout, log, timings, mark } = setup("templates");
const DIALOG = '[aria-labelledby="global-workflow-template-selector"]';

const ctx = await launch(cfg);
const consoleErrors = [];
const failedRequests = [];
const thumbResponses = {}; // thumbnail URL path -> [status, content type] (the frontend shows them as blobs)
let result = { ok: false };
const templates = {};
try {
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text().slice(0, 500));
  });
  page.on("pageerror", (e) => consoleErrors.push(`pageerror: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 400) failedRequests.push(`${r.status()} ${r.url()}`);
    const u = new URL(r.url());
    if (u.pathname.startsWith("/api/workflow_templates/") && u.pathname.endsWith(".jpg")) {
      thumbResponses[u.pathname] = [r.status(), r.headers()["content-type"] ?? ""];
    }
  });
  page.on("dialog", (d) => {
    consoleErrors.push(`alert: ${d.message()}`);
    d.dismiss().catch(() => {});
  });

  await page.goto(cfg.baseUrl);
  await page.waitForFunction(() => window.app?.graph && window.LiteGraph?.registered_node_types?.FluxDragDragEditor);
  await page.waitForTimeout(500);
  await page.evaluate(() => document.querySelectorAll(".p-dialog-close-button").forEach((b) => b.click()));
  mark("frontend_loaded");
  const atLoad = { consoleErrors: consoleErrors.splice(0), failedRequests: failedRequests.splice(0) };

  const openBrowser = async () => {
    await page.evaluate(() => window.app.extensionManager.command.execute("Comfy.BrowseTemplates"));
    const dialog = page.locator(DIALOG);
    await dialog.waitFor({ state: "visible" });
    await dialog.locator('[role="button"]').filter({ hasText: new RegExp(`^\\s*${cfg.pack}\\s*$`) }).first().click();
    return dialog;
  };

  // geometry of the editor of the graph now open, at 100 % zoom with the editor in view
  const editorState = (id) =>
    page.evaluate((id) => {
      const n = window.app.graph.getNodeById(id);
      const e = n.fluxDragEditor;
      const r = e.canvas.getBoundingClientRect();
      const t = e.transform();
      return {
        rect: { left: r.left, top: r.top, width: r.width, height: r.height },
        layout: [e.canvas.clientWidth, e.canvas.clientHeight],
        t,
        natural: e.image ? [e.image.naturalWidth, e.image.naturalHeight] : null,
        imageSrc: e.image?.src ?? null,
        drags: JSON.parse(n.widgets.find((w) => w.name === "drags").value).drags ?? [],
        status: e.status.textContent,
        nodeSize: [...n.size],
      };
    }, id);

  const toClient = (g, [fx, fy]) => {
    const [W, H] = g.natural;
    return [
      g.rect.left + (g.t.offsetX + fx * W * g.t.scale) * (g.rect.width / g.layout[0]),
      g.rect.top + (g.t.offsetY + fy * H * g.t.scale) * (g.rect.height / g.layout[1]),
    ];
  };

  const drawDrag = async (g, [hx, hy, tx, ty]) => {
    const [ax, ay] = toClient(g, [hx, hy]);
    const [bx, by] = toClient(g, [tx, ty]);
    await page.mouse.move(ax, ay);
    await page.mouse.down();
    await page.mouse.move(bx, by, { steps: 10 });
    await page.mouse.up();
    await page.waitForTimeout(150);
    return [ax, ay];
  };

  let listShot = null;
  let overlapDone = false;
  for (const [name, nodeCount] of Object.entries(cfg.templates)) {
    const dialog = await openBrowser();
    const card = dialog.locator(`[data-testid="template-workflow-${name}"]`);
    await card.waitFor({ state: "visible" });
    if (!listShot) {
      // the list as it opens, once the cards in view show their thumbnails: for the README
      await page.waitForFunction((sel) => {
        const imgs = [...document.querySelectorAll(`${sel} [data-testid^="template-workflow-"] img`)]
          .filter((i) => i.getBoundingClientRect().top < window.innerHeight);
        return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0 && !i.src.includes("default-template"));
      }, DIALOG, { timeout: 20000 }).catch(() => log("thumbnails in view did not all load"));
      await page.waitForTimeout(300);
      listShot = path.join(cfg.shotsDir, "templates.png");
      await page.screenshot({ path: listShot });
    }
    await card.scrollIntoViewIfNeeded();
    const img = card.locator("img").first();
    await page.waitForFunction((el) => el.complete && el.naturalWidth > 0 && !el.src.includes("default-template"),
      await img.elementHandle(), { timeout: 10000 }).catch(() => {});
    const thumb = await img.evaluate((el) => ({ src: el.src, width: el.naturalWidth, height: el.naturalHeight }));
    thumb.response = thumbResponses[`/api/workflow_templates/${cfg.pack}/${name}.jpg`] ?? null;
    consoleErrors.splice(0);
    failedRequests.splice(0);
    await card.click();
    await page.locator(DIALOG).waitFor({ state: "hidden" });
    await page.waitForFunction((n) => window.app.graph.nodes.length === n, nodeCount);
    await page.waitForTimeout(800); // images requested by the loaded nodes answer
    const info = await page.evaluate(() => {
      const nodes = window.app.graph.nodes.map((n) => ({
        id: n.id, type: n.type, title: n.title, box: [...(n.boundingRect ?? [n.pos[0], n.pos[1], n.size[0], n.size[1]])],
        widgets: Object.fromEntries((n.widgets ?? []).filter((w) => typeof w.value !== "object" && w.name !== "drag_editor")
          .map((w) => [w.name, w.value])),
      }));
      const dialogs = [...document.querySelectorAll(".p-dialog")].filter((d) => d.offsetParent !== null)
        .map((d) => (d.getAttribute("aria-labelledby") ?? "") + ": " + (d.textContent ?? "").slice(0, 200));
      const load = window.app.graph.nodes.find((n) => n.type === "LoadImage");
      return {
        nodes, dialogs,
        loadImage: load ? { value: load.widgets.find((w) => w.name === "image").value, shown: load.imgs?.[0]?.naturalWidth ?? 0 } : null,
        editor: window.app.graph.nodes.find((n) => n.type === "FluxDragDragEditor")?.id ?? null,
      };
    });
    const entry = { thumb, ...info, consoleErrors: consoleErrors.splice(0), failedRequests: failedRequests.splice(0) };
    if (info.editor !== null) {
      // the picture is on the canvas before any run
      await page.waitForFunction((id) => window.app.graph.getNodeById(id).fluxDragEditor.image?.naturalWidth > 0, info.editor);
      await page.evaluate((id) => {
        const { app } = window;
        const n = app.graph.getNodeById(id);
        app.canvas.deselectAll?.();
        app.canvas.ds.scale = 1;
        app.canvas.ds.offset = [-n.pos[0] + 120, -n.pos[1] + 120];
        app.graph.setDirtyCanvas(true, true);
      }, info.editor);
      await page.waitForTimeout(900); // DOM widgets follow the canvas on the next frames; a poll
      const before = await editorState(info.editor);
      if (name === cfg.editorShotTemplate) {
        await page.mouse.move(1000, 420);
        await page.waitForTimeout(200);
        await page.screenshot({ path: path.join(cfg.shotsDir, "editor_template.png") });
      }
      const selectedBefore = await page.evaluate(() => Object.keys(window.app.canvas.selected_nodes ?? {}).length);
      const start = await drawDrag(before, cfg.drag);
      const after = await editorState(info.editor);
      entry.editorCheck = { before, after, selectedBefore, start };
      if (!overlapDone) {
        overlapDone = true;
        // a text box of a node added later (so stacked above the editor) over the canvas centre
        const over = await page.evaluate(({ id, x, y }) => {
          const { app, LiteGraph } = window;
          const ed = app.graph.getNodeById(id);
          const t = LiteGraph.createNode("CLIPTextEncode");
          t.pos = [ed.pos[0] + 60, ed.pos[1] + 120];
          app.graph.add(t);
          t.setSize([300, 260]);
          app.graph.setDirtyCanvas(true, true);
          window.__fluxdragOver = t.id;
          return t.id;
        }, { id: info.editor });
        await page.waitForTimeout(900);
        const g = await editorState(info.editor);
        const [sx, sy] = toClient(g, cfg.overlapDrag.slice(0, 2));
        const covering = await page.evaluate(({ x, y }) => {
          const el = document.elementFromPoint(x, y);
          return el ? `${el.tagName.toLowerCase()}.${[...el.classList].join(".")}` : null;
        }, { x: sx, y: sy });
        await drawDrag(g, cfg.overlapDrag);
        const g2 = await editorState(info.editor);
        const text = await page.evaluate((tid) => {
          const t = window.app.graph.getNodeById(tid);
          const el = t.widgets.find((w) => w.name === "text").element;
          const order = window.app.graph.nodes.map((n) => n.id);
          return { value: el.value, focused: document.activeElement === el, order };
        }, over);
        entry.overlapCheck = { covering, before: g.drags.length, after: g2.drags.length, text, editorLast: text.order.at(-1) === info.editor };
        await page.evaluate((tid) => window.app.graph.remove(window.app.graph.getNodeById(tid)), over);
      }
    }
    templates[name] = entry;
    log(name, "opened", JSON.stringify({ dialogs: entry.dialogs, errors: entry.consoleErrors, failed: entry.failedRequests }));
  }
  mark("templates_checked");

  // ---- the toy LazyDrag template, queued from the UI ------------------------------------------
  const dialog = await openBrowser();
  await dialog.locator(`[data-testid="template-workflow-${cfg.toyTemplate}"]`).click();
  await page.locator(DIALOG).waitFor({ state: "hidden" });
  await page.waitForFunction((n) => window.app.graph.nodes.length === n, cfg.templates[cfg.toyTemplate]);
  await page.evaluate(() => {
    window.__fluxdrag = { success: [], errors: [] };
    window.app.api.addEventListener("execution_success", (e) => window.__fluxdrag.success.push(e.detail));
    window.app.api.addEventListener("execution_error", (e) => window.__fluxdrag.errors.push(e.detail));
  });
  await page.evaluate(async () => window.app.queuePrompt(0, 1));
  mark("toy_queued");
  await page.waitForFunction(() => window.__fluxdrag.success.length + window.__fluxdrag.errors.length > 0, null,
    { timeout: cfg.runTimeoutMs ?? 300000, polling: 500 });
  mark("toy_finished");
  const run = await page.evaluate(() => window.__fluxdrag);
  const saves = await page.evaluate(async () => {
    const out = {};
    const deadline = Date.now() + 10000;
    for (const n of window.app.graph.nodes.filter((x) => x.type === "SaveImage")) {
      while (!(n.imgs?.[0]?.complete && n.imgs[0].naturalWidth > 0) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
      }
      out[n.title] = { width: n.imgs?.[0]?.naturalWidth ?? 0, src: n.imgs?.[0]?.src ?? null };
    }
    return out;
  });
  await page.evaluate(() => {
    const { app } = window;
    const n = app.graph.nodes.find((x) => x.title === "Save edit");
    app.canvas.ds.scale = 0.8;
    app.canvas.ds.offset = [-n.pos[0] + 500, -n.pos[1] + 120];
    app.graph.setDirtyCanvas(true, true);
  });
  await page.waitForTimeout(500);
  await page.screenshot({ path: path.join(cfg.shotsDir, "toy_lazydrag_run.png") });
  result = { ok: true, atLoad, templates, listShot, toy: { run, saves } };
} catch (err) {
  result = { ok: false, error: String(err?.stack ?? err), templates };
} finally {
  await finish(ctx, result, timings, consoleErrors);
}
