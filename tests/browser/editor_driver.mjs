/**
 * Browser driver of tests/test_tier2_browser_editor.py: the Drag Editor in the real ComfyUI
 * frontend, in headless Chromium (playwright-core drives the system Chromium; no download).
 *
 *   node editor_driver.mjs <config.json>
 *
 * config: {baseUrl, chromium, userDataDir, imageName, drags: [[hx, hy, tx, ty], ...] (image px),
 *   anchors: [[x, y], ...] (image px, placed with a click, optional),
 *   depths: ["auto" | "front" | "behind" | null, ...] (per drag, optional: picked in the toolbar's
 *   depth select right after that drag is drawn, while it is selected),
 *          screenshot, timeoutMs}
 * Prints one JSON line (the result) on stdout; progress goes to stderr.
 *
 * Steps: open the frontend; build LoadImage -> FluxDrag Drag Editor -> Preview Image; wait until
 * the canvas shows the uploaded image (before any queue); draw each drag with real mouse events
 * (press on the handle, move in steps, release on the target); read the hidden `drags` widget;
 * queue through app.queuePrompt (what the Run button calls); wait for this prompt's
 * execution_success and the editor's `executed` message; take the screenshot.
 */
import fs from "node:fs";
import { finish, launch, setup } from "./chromium.mjs";

const { cfg, timeout, log, timings, mark } = setup("driver");

const ctx = await launch(cfg);
const consoleErrors = [];
let result = { ok: false };
try {
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => {
    const text = m.text();
    if (m.type() === "error" && !text.startsWith("Failed to load resource")) consoleErrors.push(text.slice(0, 500));
    if (text.includes("[FluxDrag]")) log("console:", text.slice(0, 300));
  });
  page.on("pageerror", (e) => consoleErrors.push(`pageerror: ${e.message}`));
  mark("browser_started");

  await page.goto(cfg.baseUrl);
  await page.waitForFunction(() => window.app?.graph && window.LiteGraph?.registered_node_types?.FluxDragDragEditor);
  mark("frontend_loaded");

  // ---- the graph: LoadImage -> Drag Editor -> Preview Image, at zoom 1 -----------------------
  const built = await page.evaluate((imageName) => {
    const { app, LiteGraph } = window;
    document.querySelectorAll(".p-dialog-close-button").forEach((b) => b.click());
    app.graph.clear();
    const load = LiteGraph.createNode("LoadImage");
    load.pos = [0, 150];
    app.graph.add(load);
    const w = load.widgets.find((x) => x.name === "image");
    w.value = imageName;
    w.callback?.(imageName);
    const ed = LiteGraph.createNode("FluxDragDragEditor");
    ed.pos = [320, 150];
    app.graph.add(ed);
    ed.setSize([500, 560]);
    load.connect(0, ed, 0);
    const prev = LiteGraph.createNode("PreviewImage");
    prev.pos = [850, 150];
    app.graph.add(prev);
    prev.setSize([320, 380]);
    ed.connect(2, prev, 0);
    app.canvas.ds.scale = 1;
    app.canvas.ds.offset = [75, 40]; // clear of the side bar and the job toasts
    app.graph.setDirtyCanvas(true, true);
    window.__fluxdrag = { ed: ed.id, load: load.id, prev: prev.id, executed: [], success: [] };
    app.api.addEventListener("executed", (e) => window.__fluxdrag.executed.push(e.detail));
    app.api.addEventListener("execution_success", (e) => window.__fluxdrag.success.push(e.detail));
    return { ed: ed.id, dragsWidget: ed.widgets.find((x) => x.name === "drags")?.value ?? null };
  }, cfg.imageName);
  log("graph built", JSON.stringify(built));

  // ---- the canvas shows the image before any queue --------------------------------------------
  await page.waitForFunction((id) => {
    const e = window.app.graph.getNodeById(id)?.fluxDragEditor;
    return e?.image?.naturalWidth > 0 && e.doc && e.canvas.clientWidth > 0;
  }, built.ed);
  mark("image_on_canvas");
  await page.waitForTimeout(300); // one poll + a frame after the image arrived

  const geom = async () =>
    page.evaluate((id) => {
      const e = window.app.graph.getNodeById(id).fluxDragEditor;
      const r = e.canvas.getBoundingClientRect();
      return {
        rect: { left: r.left, top: r.top, width: r.width, height: r.height },
        layout: [e.canvas.clientWidth, e.canvas.clientHeight],
        t: e.transform(),
        imageSize: e.doc.image_size,
        natural: [e.image.naturalWidth, e.image.naturalHeight],
      };
    }, built.ed);
  const g = await geom();
  log("canvas", JSON.stringify(g));
  // image px -> client px: letterbox transform, then the CSS zoom of the DOM widget
  const toClient = ([x, y]) => [
    g.rect.left + (g.t.offsetX + x * g.t.scale) * (g.rect.width / g.layout[0]),
    g.rect.top + (g.t.offsetY + y * g.t.scale) * (g.rect.height / g.layout[1]),
  ];

  // ---- draw the drags with the mouse ----------------------------------------------------------
  for (const [i, [hx, hy, tx, ty]] of cfg.drags.entries()) {
    const [ax, ay] = toClient([hx, hy]);
    const [bx, by] = toClient([tx, ty]);
    await page.mouse.move(ax, ay);
    await page.mouse.down();
    await page.mouse.move(bx, by, { steps: 12 });
    await page.mouse.up();
    await page.waitForTimeout(100);
    const depth = cfg.depths?.[i];
    if (depth) { // the new drag is selected: pick its depth in the toolbar, as a user does
      const select = await page.evaluateHandle((id) => window.app.graph.getNodeById(id).fluxDragEditor.depthSelect, built.ed);
      await select.asElement().selectOption(depth);
      await page.waitForTimeout(100);
    }
  }
  for (const [x, y] of cfg.anchors ?? []) { // a click with no drag places an anchor
    const [ax, ay] = toClient([x, y]);
    await page.mouse.move(ax, ay);
    await page.mouse.down();
    await page.mouse.up();
    await page.waitForTimeout(100);
  }
  await page.mouse.move(1100, 700); // empty graph: no hover ring, no tooltip in the screenshot
  mark("drawn");
  const afterDraw = await page.evaluate((id) => {
    const n = window.app.graph.getNodeById(id);
    return { widget: n.widgets.find((x) => x.name === "drags").value, status: n.fluxDragEditor.status.textContent };
  }, built.ed);
  log("widget after drawing:", afterDraw.widget);

  // ---- queue (what the Run button does) and wait for this prompt ------------------------------
  const queued = await page.evaluate(async () => {
    const r = await window.app.queuePrompt(0, 1);
    return r ?? null;
  });
  mark("queued");
  await page.waitForFunction(() => window.__fluxdrag.success.length > 0, null, { timeout });
  mark("executed");
  const events = await page.evaluate(() => window.__fluxdrag);
  const promptId = events.success[0].prompt_id;
  // the editor reloads the image the node returned (ui.fluxdrag_image)
  await page.waitForFunction((id) => {
    const e = window.app.graph.getNodeById(id).fluxDragEditor;
    return e.image?.src?.includes("fluxdrag_editor_src") && e.image.complete;
  }, built.ed);
  // the Preview Image node shows the server-side preview with arrows
  await page.waitForFunction((id) => window.app.graph.getNodeById(id).imgs?.[0]?.complete, events.prev);
  await page.evaluate(() => {
    window.app.canvas.deselectAll?.();
    window.app.graph.setDirtyCanvas(true, true);
  });
  await page.waitForTimeout(500);
  const final = await page.evaluate((id) => {
    const e = window.app.graph.getNodeById(id).fluxDragEditor;
    return { imageSrc: e.image.src, status: e.status.textContent, doc: e.doc };
  }, built.ed);
  const history = await (await fetch(`${cfg.baseUrl}/history/${promptId}`)).json();

  fs.mkdirSync(cfg.screenshot.replace(/\/[^/]*$/, ""), { recursive: true });
  // below the floating workflow tab / Run bar / toasts, right of the side bar
  await page.screenshot({ path: cfg.screenshot, clip: { x: 64, y: 148, width: 1216, height: 600 } });
  mark("screenshot");
  result = {
    ok: true,
    editorId: built.ed,
    initialWidget: built.dragsWidget,
    widgetAfterDraw: afterDraw.widget,
    statusAfterDraw: afterDraw.status,
    canvas: g,
    queued,
    promptId,
    executed: events.executed,
    final,
    history: history[promptId],
  };
} catch (err) {
  result = { ok: false, error: String(err?.stack ?? err) };
} finally {
  await finish(ctx, result, timings, consoleErrors);
}
