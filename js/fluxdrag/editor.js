/**
 * Canvas widget of the "FluxDrag Drag Editor" node (DOM side; the pure logic is in logic.js).
 *
 * The editor shows the image the node will receive and lets the user draw on it:
 *   - Drag tool:   click-drag from a handle to its target adds a numbered arrow; a click with no
 *                  drag places an anchor (a fixed point: its content stays where it is);
 *   - Mask tool:   click polygon vertices of the editable region, double-click (or click the
 *                  first vertex, or Enter) closes the polygon;
 *   - Region tool: same polygon drawing for a DragFlow region; the new region's arrow starts at
 *                  its centre (drag the arrow head to the destination); Shift+click sets the
 *                  selected region's anchor (rotation centre);
 *   - everywhere:  drag a point to move it, drag an arrow's shaft (or a polygon's inside in the
 *                  mask/region tool) to move the whole thing, right-click deletes, Ctrl+Z /
 *                  Ctrl+Shift+Z (or Ctrl+Y) undo / redo, Delete removes the selection, Escape
 *                  cancels. "Grid" shows the 16 px token grid and snaps points to token centres.
 *
 * Every change is written as JSON (see logic.js for the contract) into the node's hidden `drags`
 * STRING widget, so it is saved with the workflow and carried by the API format. ComfyUI objects
 * (the node, its widget, the app) are passed in by the entry file js/fluxdrag_editor.js; this
 * module imports nothing from ComfyUI.
 *
 * Where the image comes from, newest event wins:
 *   - the upstream node of the `image` input, polled a few times a second (no queue needed):
 *     its loaded preview (`node.imgs`), else its `image` widget value ("name.png [input]",
 *     LoadImage), else its last outputs (`app.nodeOutputs[id].images`);
 *   - `onExecuted` messages of this node carrying `fluxdrag_image` ([{filename, subfolder, type}]
 *     or [url]) or `bg_image` ([base64 / data URL], the KJNodes convention).
 */

import * as L from "./logic.js";

const HIT_RADIUS = 9; // layout px around a point / arrow that still counts as a hit
const PADDING = 6; // layout px between the widget border and the image
const POINT_RADIUS = 5; // layout px, drawn handle / target dots
const CLICK_SLOP = 3; // layout px a press may move and still be a click (not a drag)
const POLL_MS = 400;
const MIN_NODE_WIDTH = 380; // the toolbar's width: narrower nodes wrap it onto more lines

const COLORS = {
  background: "#1b1b1b",
  placeholder: "#333",
  text: "#ddd",
  handle: "#ff4d4d",
  anchor: "#4dffd2",
  target: "#3d8bff",
  arrow: "#ffd84d",
  moveArrow: "#4dffb8",
  mask: "rgba(255, 255, 255, 0.18)",
  maskStroke: "rgba(255, 255, 255, 0.85)",
  grid: "rgba(255, 255, 255, 0.14)",
  hover: "#ffffff",
  region: { relocate: "#b36bff", deform: "#ff9f40", rotate: "#40d0ff" },
};

/** Small DOM helper: element with properties, inline style and children. */
function el(tag, props = {}, style = {}, children = []) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  Object.assign(e.style, style);
  for (const c of children) e.append(c);
  return e;
}

export class DragEditor {
  /**
   * @param {object} opts
   * @param {object} opts.node         the LiteGraph node (reads its `image` input link)
   * @param {object} opts.dragsWidget  the hidden STRING widget that stores the JSON
   * @param {object} [opts.app]        ComfyUI's app (for app.api.apiURL and app.nodeOutputs)
   * @param {Function} [opts.onChange] called after every change written to the widget
   */
  constructor({ node, dragsWidget, app = null, onChange = () => {} }) {
    this.node = node;
    this.dragsWidget = dragsWidget;
    this.app = app;
    this.onChange = onChange;

    this.history = null; // undo history of documents; null until an image size is known
    this.live = null; // document shown during a pointer gesture (committed on release)
    this.gesture = null;
    this.pending = null; // polygon being drawn: [[x, y], ...] in image pixels
    this.lastPolygonClick = -Infinity;
    this.cursor = null; // last pointer position, image pixels
    this.hover = null;
    this.selection = null; // {kind: "arrow" | "region", index}
    this.tool = "drag";
    this.snap = false;
    this.newMode = "drag";
    this.newScale = [1, 1];
    this.newAngle = 0; // rotation instruction of the next move drag (degrees, clockwise)
    this.newDepth = "auto"; // depth intent of the next drag ("auto" | "front" | "behind")
    this.newOp = "relocate";

    this.image = null;
    this.loadingUrl = null;
    this.upstreamUrl = null;
    this.warning = null; // rescale / load / parse messages shown in the status line
    this.unreadable = false; // the widget held JSON we could not read: do not overwrite silently
    this.lastWritten = undefined;
    this.frame = 0;
    this.screenSize = [0, 0];
    this.autoFit = false; // set by the entry file on a new node: size the node to the first image

    this.buildDom();
    this.loadFromWidget();
    this.timer = setInterval(() => this.poll(), POLL_MS);
  }

  // ------------------------------------------------------------------------------- DOM

  buildDom() {
    const button = (label, title, onClick) => {
      const b = el("button", { textContent: label, title, type: "button" }, {
        padding: "1px 6px", fontSize: "12px", cursor: "pointer",
        background: "#333", color: COLORS.text, border: "1px solid #555", borderRadius: "3px",
      });
      b.addEventListener("click", (e) => {
        e.stopPropagation();
        onClick();
        this.focusKeys();
      });
      return b;
    };
    const select = (options, title, onChange) => {
      const s = el("select", { title }, { fontSize: "12px", background: "#333", color: COLORS.text, border: "1px solid #555" });
      for (const [value, label] of options) s.append(el("option", { value, textContent: label }));
      s.addEventListener("change", () => {
        onChange(s.value);
        this.focusKeys();
      });
      return s;
    };
    const number = (title, onChange) => {
      const i = el("input", { type: "number", title, min: "0.05", step: "0.05", value: "1" }, {
        width: "44px", fontSize: "12px", background: "#333", color: COLORS.text, border: "1px solid #555",
      });
      i.addEventListener("change", () => onChange(parseFloat(i.value)));
      return i;
    };

    this.toolButtons = {
      drag: button("Drag", "Drag tool: click-drag from handle to target; a click places an anchor (a fixed point)", () => this.setTool("drag")),
      mask: button("Mask", "Editable-region tool: click vertices, double-click closes", () => this.setTool("mask")),
      region: button("Region", "DragFlow region tool: click vertices, double-click closes; Shift+click sets the anchor", () => this.setTool("region")),
    };
    this.modeSelect = select([["drag", "drag (elastic)"], ["move", "move (rigid)"]], "Mode of the selected / next drag", (v) => this.setMode(v));
    this.scaleX = number("Axis scale x of a move drag", (v) => this.setScale(0, v));
    this.scaleY = number("Axis scale y of a move drag", (v) => this.setScale(1, v));
    // Rotation instruction: degrees about the handle, clockwise on screen (move drags only).
    this.angleInput = number("Rotation of a move drag about its handle, degrees clockwise", (v) => this.setAngle(v));
    Object.assign(this.angleInput, { min: "-360", max: "360", step: "5", value: "0" });
    // Depth intent: where the moved content lands on another object, behind it or over it.
    this.depthSelect = select(
      [["auto", "depth: auto"], ["behind", "goes behind"], ["front", "goes in front"]],
      "Depth of the selected / next drag, or of the selected region: goes behind = what it moves stays behind the objects where it lands; goes in front = it covers them; auto = the method's depth setting decides",
      (v) => this.setDepth(v),
    );
    this.opSelect = select(L.REGION_OPS.map((o) => [o, o]), "Operation of the selected / next region", (v) => this.setOp(v));
    this.gridBox = el("input", { type: "checkbox", title: "Show the 16 px token grid and snap points to token centres" });
    this.gridBox.addEventListener("change", () => {
      this.snap = this.gridBox.checked;
      this.focusKeys();
      this.requestRender();
    });
    this.undoButton = button("Undo", "Undo (Ctrl+Z)", () => this.undo());
    this.redoButton = button("Redo", "Redo (Ctrl+Shift+Z / Ctrl+Y)", () => this.redo());
    const clearButton = button("Clear", "Remove all drags, the mask and regions (undoable)", () => this.clear());

    const toolbar = el("div", {}, { flex: "0 0 auto", display: "flex", flexWrap: "wrap", gap: "4px", alignItems: "center" }, [
      ...Object.values(this.toolButtons),
      this.modeSelect,
      this.scaleX,
      this.scaleY,
      this.angleInput,
      this.depthSelect,
      this.opSelect,
      el("label", { title: this.gridBox.title }, { display: "flex", alignItems: "center", gap: "2px", fontSize: "12px", color: COLORS.text }, [this.gridBox, "Grid"]),
      this.undoButton,
      this.redoButton,
      clearButton,
    ]);

    this.canvas = el("canvas", {}, { width: "100%", height: "100%", display: "block", cursor: "crosshair", touchAction: "none", userSelect: "none" });
    this.ctx = this.canvas.getContext("2d");
    // Keyboard sink: a (visually hidden) <input> keeps focus while the editor is used. ComfyUI's
    // workflow undo (Ctrl+Z on window, capture phase) and its shortcuts skip key events whose
    // focus is an INPUT, so our Ctrl+Z undoes a drag instead of the last graph change.
    this.keySink = el("input", { readOnly: true, tabIndex: -1, ariaLabel: "drag editor keyboard" }, {
      position: "absolute", left: "0", top: "0", width: "1px", height: "1px", opacity: "0", pointerEvents: "none", border: "0", padding: "0",
    });
    const stage = el("div", {}, { position: "relative", flex: "1 1 auto", minHeight: "0" }, [this.canvas, this.keySink]);
    // Fixed height (two lines) so a longer message never resizes the canvas under the pointer.
    this.status = el("div", {}, { flex: "0 0 auto", fontSize: "11px", lineHeight: "14px", height: "28px", overflow: "hidden", color: "#aaa" });

    this.element = el("div", { className: "fluxdrag-editor" }, {
      display: "flex", flexDirection: "column", gap: "4px", width: "100%", height: "100%", boxSizing: "border-box", fontFamily: "sans-serif",
    }, [toolbar, stage, this.status]);

    this.canvas.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    // A mousedown on a non-focusable canvas would move the focus back to <body> right after
    // pointerdown focused the key sink; prevent that default so keys keep coming to the editor.
    this.canvas.addEventListener("mousedown", (e) => {
      e.preventDefault();
      this.focusKeys();
    });
    this.canvas.addEventListener("pointermove", (e) => this.onPointerMove(e));
    this.canvas.addEventListener("pointerup", (e) => this.onPointerUp(e));
    this.canvas.addEventListener("pointercancel", () => this.cancelGesture());
    this.canvas.addEventListener("pointerleave", () => {
      this.hover = null;
      this.requestRender();
    });
    this.canvas.addEventListener("dblclick", (e) => {
      e.stopPropagation();
      if (this.pending && this.pending.length >= 3) this.finishPolygon();
    });
    this.canvas.addEventListener("contextmenu", (e) => {
      // Right-click deletes (handled on pointerdown); keep menus of the page and LiteGraph away.
      e.preventDefault();
      e.stopPropagation();
    });
    this.keySink.addEventListener("keydown", (e) => this.onKeyDown(e));
    this.keySink.addEventListener("keyup", (e) => e.stopPropagation());

    this.resizeObserver = typeof ResizeObserver !== "undefined" ? new ResizeObserver(() => this.resize()) : null;
    this.resizeObserver?.observe(stage);
    this.updateToolbar();
  }

  focusKeys() {
    this.keySink.focus({ preventScroll: true });
  }

  /** Stop timers and observers (node removed). */
  destroy() {
    clearInterval(this.timer);
    this.resizeObserver?.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
  }

  // ------------------------------------------------------------------------------- state

  /** The document on screen: the live gesture preview, else the history's present. */
  get doc() {
    return this.live ?? this.history?.present ?? null;
  }

  /** Record a new document, write it into the widget and redraw. */
  commit(doc) {
    if (!this.history || doc === this.history.present) return;
    this.history = L.pushState(this.history, doc);
    this.unreadable = false; // the user drew over an unreadable value: it may be replaced now
    this.warning = null; // a rescale / load warning has been seen once the user edits
    this.afterChange();
  }

  afterChange() {
    this.fixSelection();
    this.writeWidget();
    this.updateToolbar();
    this.requestRender();
  }

  /** Write the present document into the hidden `drags` widget (the saved / queued value). */
  writeWidget() {
    if (!this.history || this.unreadable) return;
    const text = L.serializeDocument(this.history.present);
    this.lastWritten = text;
    if (this.dragsWidget.value !== text) {
      this.dragsWidget.value = text;
      this.onChange(text);
    }
  }

  /** (Re)load the document from the widget value (node created, workflow loaded, value set). */
  loadFromWidget() {
    const text = this.dragsWidget.value;
    this.lastWritten = text;
    this.pending = null;
    this.cancelGesture();
    let doc = null;
    this.unreadable = false;
    try {
      doc = L.parseDocument(text);
      this.warning = null;
    } catch (err) {
      this.unreadable = true;
      this.warning = `could not read the saved drags (${err.message}); drawing replaces them`;
      console.warn(`[FluxDrag] ${this.warning}`);
    }
    if (!doc && this.image) doc = L.createDocument(this.image.naturalWidth, this.image.naturalHeight);
    this.history = doc ? L.createHistory(doc) : null;
    if (doc && this.image) this.applyImageSize(this.image.naturalWidth, this.image.naturalHeight);
    this.fixSelection();
    this.updateToolbar();
    this.requestRender();
  }

  /**
   * The image now shown is W x H: start a document, or rescale the existing one (all undo
   * states too, so undo stays consistent) and show a warning saying so.
   */
  applyImageSize(width, height) {
    if (!this.history) {
      this.history = L.createHistory(L.createDocument(width, height));
      this.afterChange();
      return;
    }
    const { warning } = L.rescaleDocument(this.history.present, [width, height]);
    const [W, H] = this.history.present.image_size;
    if (W === width && H === height) return;
    this.history = L.mapHistory(this.history, (d) => L.rescaleDocument(d, [width, height]).doc);
    if (warning) {
      this.warning = warning;
      console.warn(`[FluxDrag] ${warning}`);
    }
    this.afterChange();
  }

  fixSelection() {
    const d = this.doc;
    const s = this.selection;
    if (!d || !s) return;
    if ((s.kind === "arrow" && !d.drags[s.index]) || (s.kind === "region" && !d.regions[s.index])) this.selection = null;
  }

  // ------------------------------------------------------------------------------- commands

  setTool(tool) {
    this.tool = tool;
    this.pending = null;
    this.updateToolbar();
    this.requestRender();
  }

  undo() {
    if (!this.history || !L.canUndo(this.history)) return;
    this.cancelGesture();
    this.history = L.undo(this.history);
    this.afterChange();
  }

  redo() {
    if (!this.history || !L.canRedo(this.history)) return;
    this.cancelGesture();
    this.history = L.redo(this.history);
    this.afterChange();
  }

  clear() {
    if (!this.history || L.isEmptyDocument(this.history.present)) return;
    this.pending = null;
    this.selection = null;
    this.warning = null;
    this.commit(L.clearDocument(this.history.present));
  }

  /** Mode of the selected drag, else of the drags drawn next. */
  setMode(mode) {
    const s = this.selection;
    if (s?.kind === "arrow" && this.history) {
      this.commit(L.setDragMode(this.history.present, s.index, mode));
    } else {
      this.newMode = mode;
      this.updateToolbar();
    }
  }

  setScale(axis, value) {
    if (!(value > 0)) return this.updateToolbar();
    const s = this.selection;
    if (s?.kind === "arrow" && this.history) {
      const drag = this.history.present.drags[s.index];
      const scale = [...drag.scale];
      scale[axis] = value;
      this.commit(L.setDragMode(this.history.present, s.index, drag.mode, scale));
    } else {
      this.newScale = [...this.newScale];
      this.newScale[axis] = value;
    }
  }

  setAngle(value) {
    if (!Number.isFinite(value)) return this.updateToolbar();
    const s = this.selection;
    if (s?.kind === "arrow" && this.history) {
      this.commit(L.setDragAngle(this.history.present, s.index, value));
    } else {
      this.newAngle = value;
    }
  }

  /** Depth intent of the selected drag or region, else of the drags drawn next. */
  setDepth(depth) {
    const s = this.selection;
    if (s?.kind === "arrow" && this.history) {
      this.commit(L.setDragDepth(this.history.present, s.index, depth));
    } else if (s?.kind === "region" && this.history) {
      this.commit(L.setRegionDepth(this.history.present, s.index, depth));
    } else {
      this.newDepth = depth;
    }
  }

  setOp(op) {
    const s = this.selection;
    if (s?.kind === "region" && this.history) {
      this.commit(L.updateRegion(this.history.present, s.index, { op }));
    } else {
      this.newOp = op;
    }
  }

  /** Reflect tool, selection and history in the toolbar controls. */
  updateToolbar() {
    for (const [tool, b] of Object.entries(this.toolButtons)) {
      b.style.background = tool === this.tool ? "#4a6da7" : "#333";
    }
    const d = this.history?.present;
    const s = this.selection;
    const drag = s?.kind === "arrow" ? d?.drags[s.index] : null;
    const region = s?.kind === "region" ? d?.regions[s.index] : null;
    this.modeSelect.value = drag ? drag.mode : this.newMode;
    const scale = drag ? drag.scale : this.newScale;
    this.scaleX.value = String(scale[0]);
    this.scaleY.value = String(scale[1]);
    // The axis scale only means something for rigid "move" drags.
    this.scaleX.disabled = this.scaleY.disabled = this.modeSelect.value !== "move";
    this.angleInput.value = String(drag ? drag.angle ?? 0 : this.newAngle);
    this.angleInput.disabled = this.modeSelect.value !== "move";
    this.depthSelect.value = drag ? drag.depth ?? "auto" : region ? region.depth ?? "auto" : this.newDepth;
    // An anchor does not move: it has no depth.
    this.depthSelect.disabled = Boolean(drag && L.isAnchor(drag));
    this.opSelect.value = region ? region.op : this.newOp;
    this.undoButton.disabled = !this.history || !L.canUndo(this.history);
    this.redoButton.disabled = !this.history || !L.canRedo(this.history);
  }

  // ------------------------------------------------------------------------------- geometry

  /** Letterbox transform of the current document into the canvas (layout px). */
  transform() {
    const d = this.doc;
    if (!d) return null;
    return L.fitTransform(d.image_size, [this.canvas.clientWidth, this.canvas.clientHeight], PADDING);
  }

  /** Pointer event -> continuous image coordinates. */
  eventToImage(e, t) {
    const rect = this.canvas.getBoundingClientRect();
    const layout = L.clientToLayout(e.clientX, e.clientY, rect, this.canvas.clientWidth, this.canvas.clientHeight);
    return { layout, image: L.canvasToImage(t, layout) };
  }

  /** Stored point for an image position: token-centre snapped (Grid on, Alt held = off) or rounded. */
  quantize(p, e) {
    return L.quantizePoint(p, this.doc.image_size, { snap: this.snap && !e?.altKey });
  }

  /** Layers the hit test looks at: drags always, the mask / regions only in their own tool. */
  hitLayers() {
    if (this.tool === "mask") return ["drags", "mask"];
    if (this.tool === "region") return ["drags", "regions"];
    return ["drags"];
  }

  // ------------------------------------------------------------------------------- pointer

  onPointerDown(e) {
    e.stopPropagation();
    this.bringToFront();
    this.focusKeys();
    const t = this.transform();
    if (!t) return;
    const { layout, image: p } = this.eventToImage(e, t);
    const radius = HIT_RADIUS / t.scale; // hit radius in image pixels
    const doc = this.history.present;

    if (e.button === 2) {
      this.deleteAt(p, radius);
      return;
    }
    if (e.button !== 0) return;

    // Drawing a polygon: clicks add vertices, a double-click / click on the first vertex closes.
    if (this.pending) {
      const now = performance.now();
      const action = L.polygonClickAction(this.pending, p, { radius, now, lastClickTime: this.lastPolygonClick });
      if (action === "close") this.finishPolygon();
      else if (action === "add") this.pending = [...this.pending, this.quantize(p, e)];
      this.lastPolygonClick = now;
      this.requestRender();
      return;
    }

    // Shift+click in the region tool places the selected region's anchor.
    if (this.tool === "region" && e.shiftKey && this.selection?.kind === "region") {
      this.commit(L.updateRegion(doc, this.selection.index, { anchor: this.quantize(p, e) }));
      return;
    }

    const hit = L.hitTest(doc, p, radius, { layers: this.hitLayers() });
    if (hit) {
      this.select(hit);
      const whole = hit.kind === "arrow" || hit.kind === "region-arrow";
      this.startGesture(e, { type: whole ? "translate" : "move-point", ref: hit, start: p, startLayout: layout, startDoc: doc });
      return;
    }

    if (this.tool === "drag") {
      const handle = this.quantize(p, e);
      this.selection = null;
      this.startGesture(e, { type: "new-drag", handle, target: handle, startLayout: layout, moved: false });
      return;
    }

    // Mask / region tool: pressing inside an existing polygon moves it; elsewhere starts one.
    const inside = L.findPolygonAt(doc, p, this.tool === "mask" ? "mask" : "regions");
    if (inside) {
      this.select(inside);
      this.startGesture(e, { type: "translate", ref: inside, start: p, startLayout: layout, startDoc: doc });
      return;
    }
    this.selection = null;
    this.pending = [this.quantize(p, e)];
    this.lastPolygonClick = performance.now();
    this.updateToolbar();
    this.requestRender();
  }

  /**
   * Raise this node above the others (ComfyUI stacks DOM widgets in graph node order), so a
   * widget of an overlapping node no longer covers the canvas.
   */
  bringToFront() {
    const graph = this.node.graph;
    const nodes = graph?._nodes ?? graph?.nodes;
    if (!nodes || nodes[nodes.length - 1] === this.node) return;
    this.app?.canvas?.bringToFront?.(this.node);
    this.node.setDirtyCanvas?.(true, true);
  }

  /**
   * Whether a pointerdown that landed on another element (another node's DOM widget lying over
   * this canvas) is ours: the point is on this canvas and the editor shows a document.
   */
  claimsPointer(e) {
    if (!this.doc || !this.canvas.isConnected || this.element.contains(e.target)) return false;
    return L.rectContains(this.canvas.getBoundingClientRect(), e.clientX, e.clientY);
  }

  /** A pointerdown claimed from an overlapping widget: handle it as our own. */
  takePointer(e) {
    e.preventDefault(); // no focus / caret in the widget underneath, no mouse events after
    e.stopImmediatePropagation();
    this.onPointerDown(e);
  }

  startGesture(e, gesture) {
    this.gesture = gesture;
    try {
      this.canvas.setPointerCapture(e.pointerId); // keep receiving moves outside the canvas
    } catch {
      // synthetic events (tests) have no active pointer to capture
    }
    this.updateToolbar();
    this.requestRender();
  }

  onPointerMove(e) {
    const t = this.transform();
    if (!t) return;
    const { layout, image: p } = this.eventToImage(e, t);
    this.cursor = p;
    const g = this.gesture;
    if (!g) {
      // Hover feedback only.
      const hit = this.pending ? null : L.hitTest(this.doc, p, HIT_RADIUS / t.scale, { layers: this.hitLayers() });
      this.hover = hit;
      this.canvas.style.cursor = hit ? (hit.kind.endsWith("arrow") ? "move" : "pointer") : "crosshair";
      this.requestRender();
      return;
    }
    e.stopPropagation();
    if (L.distance(layout, g.startLayout) > CLICK_SLOP) g.moved = true;
    if (g.type === "new-drag") {
      g.target = this.quantize(p, e);
    } else if (g.type === "move-point") {
      this.live = L.movePoint(g.startDoc, g.ref, this.quantize(p, e));
    } else if (g.type === "translate") {
      // Whole objects move by whole pixels, or by whole tokens when snapping.
      const step = this.snap && !e.altKey ? L.TOKEN_SIZE : 1;
      const dx = Math.round((p[0] - g.start[0]) / step) * step;
      const dy = Math.round((p[1] - g.start[1]) / step) * step;
      this.live = L.translateRef(g.startDoc, g.ref, dx, dy);
    }
    this.requestRender();
  }

  onPointerUp(e) {
    const g = this.gesture;
    if (!g) return;
    e.stopPropagation();
    this.gesture = null;
    const live = this.live;
    this.live = null;
    if (g.type === "new-drag") {
      const same = g.handle[0] === g.target[0] && g.handle[1] === g.target[1];
      if (g.moved && !same) {
        const doc = L.addDrag(this.history.present, g.handle, g.target, { mode: this.newMode, scale: this.newScale, angle: this.newAngle, depth: this.newDepth });
        this.selection = { kind: "arrow", index: doc.drags.length - 1 };
        this.commit(doc);
      } else if (!g.moved) {
        // a click with no drag pins that point: an anchor (its content stays where it is)
        const doc = L.addAnchor(this.history.present, g.handle);
        this.selection = { kind: "arrow", index: doc.drags.length - 1 };
        this.commit(doc);
      }
    } else if (live && g.moved) {
      this.commit(live);
    }
    this.updateToolbar();
    this.requestRender();
  }

  cancelGesture() {
    this.gesture = null;
    this.live = null;
    this.requestRender();
  }

  /** Select the drag / region a hit belongs to (vertices of the mask select nothing). */
  select(hit) {
    if (["handle", "target", "arrow"].includes(hit.kind)) this.selection = { kind: "arrow", index: hit.index };
    else if (hit.kind.startsWith("region")) this.selection = { kind: "region", index: hit.index };
    else this.selection = null;
  }

  /** Right-click: drop the last pending vertex, else delete the point / arrow / polygon under p. */
  deleteAt(p, radius) {
    if (this.pending) {
      this.pending = this.pending.length > 1 ? this.pending.slice(0, -1) : null;
      this.requestRender();
      return;
    }
    const doc = this.history.present;
    const hit =
      L.hitTest(doc, p, radius, { layers: this.hitLayers() }) ??
      (this.tool === "drag" ? null : L.findPolygonAt(doc, p, this.tool === "mask" ? "mask" : "regions"));
    if (hit) {
      this.selection = null;
      this.commit(L.deleteRef(doc, hit));
    }
  }

  finishPolygon() {
    const polygon = this.pending;
    this.pending = null;
    if (!polygon || polygon.length < 3) return this.requestRender();
    const doc = this.history.present;
    if (this.tool === "region") {
      const next = L.addRegion(doc, polygon, { op: this.newOp });
      this.selection = { kind: "region", index: next.regions.length - 1 };
      this.commit(next);
    } else {
      this.commit(L.addMaskPolygon(doc, polygon));
    }
  }

  // ------------------------------------------------------------------------------- keyboard

  onKeyDown(e) {
    // Keys typed in the editor never reach ComfyUI's shortcuts (Delete would remove the node).
    e.stopPropagation();
    const mod = e.ctrlKey || e.metaKey;
    const key = e.key.toLowerCase();
    let handled = true;
    if (mod && key === "z" && !e.shiftKey) this.undo();
    else if (mod && ((key === "z" && e.shiftKey) || key === "y")) this.redo();
    else if (key === "escape") {
      this.pending = null;
      this.selection = null;
      this.cancelGesture();
      this.updateToolbar();
    } else if (key === "enter" && this.pending) this.finishPolygon();
    else if ((key === "delete" || key === "backspace") && this.selection && this.history) {
      const s = this.selection;
      this.selection = null;
      this.commit(L.deleteRef(this.history.present, s.kind === "arrow" ? { kind: "arrow", index: s.index } : { kind: "region", index: s.index }));
    } else handled = false;
    if (handled) e.preventDefault();
  }

  // ------------------------------------------------------------------------------- image sources

  apiURL(path) {
    return this.app?.api?.apiURL ? this.app.api.apiURL(path) : path;
  }

  /** The node connected to our `image` input, through legacy Reroute nodes. */
  upstreamNode() {
    const slot = this.node.inputs?.findIndex((i) => i.name === "image") ?? -1;
    if (slot < 0 || this.node.inputs[slot].link == null) return null;
    try {
      let src = this.node.getInputNode?.(slot) ?? null;
      for (let hops = 0; src && src.type === "Reroute" && hops < 16; hops++) src = src.getInputNode?.(0) ?? null;
      return src;
    } catch {
      return null; // node not in a graph (being created / removed)
    }
  }

  /** URL of the image the upstream node shows, or null. */
  upstreamImageUrl() {
    const src = this.upstreamNode();
    if (!src) return null;
    const imgs = src.imgs;
    const img = imgs?.[src.imageIndex ?? 0] ?? imgs?.[0];
    if (img?.src) return img.src;
    const widget = src.widgets?.find((w) => w.name === "image" && typeof w.value === "string");
    const ref = widget ? L.parseImageWidgetValue(widget.value) : null;
    if (ref) return this.apiURL(L.viewQuery(ref));
    const out = this.app?.nodeOutputs?.[String(src.id)]?.images?.[0];
    if (out?.filename) return this.apiURL(L.viewQuery(out));
    return null;
  }

  /** Runs every POLL_MS: upstream image, external widget changes, on-screen size (zoom). */
  poll() {
    if (this.dragsWidget.value !== this.lastWritten) this.loadFromWidget();
    const url = this.upstreamImageUrl();
    if (url !== this.upstreamUrl) {
      this.upstreamUrl = url;
      if (url) this.loadImage(url);
    }
    const rect = this.canvas.getBoundingClientRect();
    if (Math.round(rect.width) !== this.screenSize[0] || Math.round(rect.height) !== this.screenSize[1]) this.resize();
    if (this.autoFit && this.image?.naturalWidth > 0) this.fitNodeToImage();
  }

  /** Called by the entry file when the `image` link changes: look again right away. */
  onConnectionsChange() {
    setTimeout(() => this.poll(), 0);
  }

  /**
   * Output of this node's execution. Accepts `fluxdrag_image` ([ref] or [url]) or `bg_image`
   * ([base64 or data URL]); other keys (e.g. `images`, the preview with arrows) are ignored.
   */
  onExecuted(output) {
    const item = output?.fluxdrag_image?.[0] ?? output?.bg_image?.[0];
    if (!item) return;
    let url = null;
    if (typeof item === "string") {
      url = /^(data:|blob:|https?:|\/)/.test(item) ? item : `data:image/jpeg;base64,${item}`;
    } else if (item.filename) {
      url = this.apiURL(L.viewQuery(item));
    }
    if (url) this.loadImage(url);
  }

  loadImage(url) {
    this.loadingUrl = url;
    const img = new Image();
    img.onload = () => {
      if (this.loadingUrl !== url) return; // a newer image was requested meanwhile
      this.image = img;
      if (this.warning?.startsWith("could not load")) this.warning = null;
      this.applyImageSize(img.naturalWidth, img.naturalHeight);
      if (this.autoFit) this.fitNodeToImage();
      this.requestRender();
    };
    img.onerror = () => {
      if (this.loadingUrl !== url) return;
      this.warning = `could not load the image (${url.slice(0, 80)})`;
      this.requestRender();
    };
    img.src = url;
  }

  /**
   * Size the node so the canvas shows the image with its longer side L.EDITOR_IMAGE_SIDE layout px
   * and the image's aspect (no bars). Done once for a new node, when its first image arrives.
   */
  fitNodeToImage() {
    const cw = this.canvas.clientWidth;
    const ch = this.canvas.clientHeight;
    if (!this.image || cw <= 0 || ch <= 0 || !this.node.setSize) return; // not laid out: next poll
    const chrome = [this.node.size[0] - cw, this.node.size[1] - ch];
    const size = L.editorNodeSize([this.image.naturalWidth, this.image.naturalHeight], chrome,
      { padding: PADDING, minWidth: MIN_NODE_WIDTH });
    this.autoFit = false;
    this.node.setSize(size);
    this.node.setDirtyCanvas?.(true, true);
  }

  // ------------------------------------------------------------------------------- drawing

  /** Size the backing store to the on-screen size (graph zoom x devicePixelRatio) for crisp lines. */
  resize() {
    const cw = this.canvas.clientWidth;
    const ch = this.canvas.clientHeight;
    const rect = this.canvas.getBoundingClientRect();
    this.screenSize = [Math.round(rect.width), Math.round(rect.height)];
    if (cw <= 0 || ch <= 0) return;
    const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
    const zoom = rect.width > 0 ? rect.width / cw : 1;
    // backing pixels per layout pixel, capped so a huge zoom does not allocate a giant canvas
    const k = Math.min(zoom * dpr, 4096 / Math.max(cw, ch));
    this.canvas.width = Math.max(1, Math.round(cw * k));
    this.canvas.height = Math.max(1, Math.round(ch * k));
    this.pixelScale = this.canvas.width / cw;
    this.render();
  }

  requestRender() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    const ctx = this.ctx;
    const cw = this.canvas.clientWidth;
    const ch = this.canvas.clientHeight;
    if (!cw || !ch) return;
    const k = this.pixelScale ?? 1;
    // Draw in layout pixels; the transform maps them onto the backing store.
    ctx.setTransform(k, 0, 0, k, 0, 0);
    ctx.fillStyle = COLORS.background;
    ctx.fillRect(0, 0, cw, ch);
    const doc = this.doc;
    if (!doc) {
      this.drawCentredText("Connect an IMAGE (e.g. Load Image) to draw drags", cw, ch);
      this.updateStatus();
      return;
    }
    const t = this.transform();
    if (this.image) {
      ctx.drawImage(this.image, t.offsetX, t.offsetY, t.width, t.height);
    } else {
      ctx.fillStyle = COLORS.placeholder;
      ctx.fillRect(t.offsetX, t.offsetY, t.width, t.height);
      this.drawCentredText(`image not loaded yet (${doc.image_size[0]}x${doc.image_size[1]})`, cw, ch);
    }
    if (this.snap) this.drawGrid(t, doc.image_size);
    if (doc.mask) for (const poly of doc.mask.polygons) this.drawPolygon(t, poly, COLORS.mask, COLORS.maskStroke, this.tool === "mask");
    doc.regions.forEach((r, i) => this.drawRegion(t, r, i));
    doc.drags.forEach((d, i) => this.drawDrag(t, d, i));

    const g = this.gesture;
    if (g?.type === "new-drag" && g.moved) this.drawDrag(t, { handle: g.handle, target: g.target, mode: this.newMode }, doc.drags.length);
    if (this.pending) this.drawPending(t);
    if (this.hover && !g) this.drawHover(t, doc, this.hover);
    this.updateStatus();
  }

  drawCentredText(text, cw, ch) {
    const ctx = this.ctx;
    ctx.fillStyle = COLORS.text;
    ctx.font = "13px sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(text, cw / 2, ch / 2);
  }

  /** Token boundaries every 16 image pixels (skipped when the cells would be < 4 layout px). */
  drawGrid(t, [W, H]) {
    const step = L.TOKEN_SIZE * t.scale;
    if (step < 4) return;
    const ctx = this.ctx;
    ctx.strokeStyle = COLORS.grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let x = L.TOKEN_SIZE; x < W; x += L.TOKEN_SIZE) {
      const cx = t.offsetX + x * t.scale;
      ctx.moveTo(cx, t.offsetY);
      ctx.lineTo(cx, t.offsetY + t.height);
    }
    for (let y = L.TOKEN_SIZE; y < H; y += L.TOKEN_SIZE) {
      const cy = t.offsetY + y * t.scale;
      ctx.moveTo(t.offsetX, cy);
      ctx.lineTo(t.offsetX + t.width, cy);
    }
    ctx.stroke();
  }

  drawPolygon(t, poly, fill, stroke, showVertices, lineWidth = 1.5) {
    if (poly.length === 0) return;
    const ctx = this.ctx;
    ctx.beginPath();
    poly.forEach((q, i) => {
      const [x, y] = L.imageToCanvas(t, q);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.closePath();
    ctx.fillStyle = fill;
    ctx.fill();
    ctx.setLineDash([5, 3]);
    ctx.strokeStyle = stroke;
    ctx.lineWidth = lineWidth;
    ctx.stroke();
    ctx.setLineDash([]);
    if (showVertices) for (const q of poly) this.drawDot(L.imageToCanvas(t, q), 3, stroke);
  }

  drawRegion(t, r, i) {
    const color = COLORS.region[r.op] ?? "#ccc";
    const selected = this.selection?.kind === "region" && this.selection.index === i;
    for (const poly of r.mask.polygons) this.drawPolygon(t, poly, `${color}40`, color, this.tool === "region", selected ? 3 : 1.5);
    const a = L.imageToCanvas(t, r.begin);
    const b = L.imageToCanvas(t, r.target);
    this.drawArrow(a, b, color, selected ? 3 : 2);
    this.drawDot(a, POINT_RADIUS - 1, color);
    this.drawDot(b, POINT_RADIUS - 1, COLORS.target);
    if (r.anchor) this.drawCross(L.imageToCanvas(t, r.anchor), color);
    this.drawLabel(`R${i + 1} ${r.op}`, [a[0] + 8, a[1] + 14], color);
  }

  drawDrag(t, d, i) {
    const selected = this.selection?.kind === "arrow" && this.selection.index === i;
    const a = L.imageToCanvas(t, d.handle);
    if (L.isAnchor(d)) { // a fixed point: a ringed dot, no arrow
      const ctx = this.ctx;
      ctx.strokeStyle = COLORS.anchor;
      ctx.lineWidth = selected ? 3.5 : 2;
      ctx.beginPath();
      ctx.arc(a[0], a[1], POINT_RADIUS + 4, 0, 2 * Math.PI);
      ctx.stroke();
      this.drawDot(a, POINT_RADIUS, COLORS.anchor);
      this.drawLabel(`${i + 1} anchor`, [a[0] - 8, a[1] - 12], COLORS.anchor);
      return;
    }
    const b = L.imageToCanvas(t, d.target);
    this.drawArrow(a, b, d.mode === "move" ? COLORS.moveArrow : COLORS.arrow, selected ? 3.5 : 2);
    this.drawDot(a, POINT_RADIUS, COLORS.handle);
    this.drawDot(b, POINT_RADIUS, COLORS.target);
    const scale = d.scale && (d.scale[0] !== 1 || d.scale[1] !== 1) ? ` x${d.scale[0]},${d.scale[1]}` : "";
    const angle = d.angle ? ` ⟳${d.angle}°` : "";
    const depth = d.depth === "behind" ? " behind" : d.depth === "front" ? " front" : "";
    this.drawLabel(`${i + 1}${d.mode === "move" ? ` move${scale}${angle}` : ""}${depth}`, [a[0] - 8, a[1] - 10], COLORS.handle);
  }

  /** Shaft a -> b with a filled head at b (sizes in layout px). */
  drawArrow(a, b, color, width) {
    const ctx = this.ctx;
    const len = Math.hypot(b[0] - a[0], b[1] - a[1]);
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    ctx.moveTo(a[0], a[1]);
    ctx.lineTo(b[0], b[1]);
    ctx.stroke();
    if (len < 1) return;
    // Unit vector along the arrow and its normal span the head triangle.
    const ux = (b[0] - a[0]) / len;
    const uy = (b[1] - a[1]) / len;
    const head = Math.min(10, len * 0.5);
    ctx.beginPath();
    ctx.moveTo(b[0], b[1]);
    ctx.lineTo(b[0] - ux * head - uy * head * 0.5, b[1] - uy * head + ux * head * 0.5);
    ctx.lineTo(b[0] - ux * head + uy * head * 0.5, b[1] - uy * head - ux * head * 0.5);
    ctx.closePath();
    ctx.fill();
  }

  drawDot([x, y], r, color) {
    const ctx = this.ctx;
    ctx.beginPath();
    ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fillStyle = color;
    ctx.fill();
    ctx.lineWidth = 1;
    ctx.strokeStyle = "#000";
    ctx.stroke();
  }

  drawCross([x, y], color) {
    const ctx = this.ctx;
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(x - 6, y - 6);
    ctx.lineTo(x + 6, y + 6);
    ctx.moveTo(x + 6, y - 6);
    ctx.lineTo(x - 6, y + 6);
    ctx.stroke();
  }

  drawLabel(text, [x, y], color) {
    const ctx = this.ctx;
    ctx.font = "bold 11px sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    const w = ctx.measureText(text).width + 6;
    ctx.fillStyle = "rgba(0, 0, 0, 0.65)";
    ctx.fillRect(x - w / 2, y - 7, w, 14);
    ctx.fillStyle = color;
    ctx.fillText(text, x, y);
  }

  /** Polygon being drawn, with a rubber band from the last vertex to the cursor. */
  drawPending(t) {
    const ctx = this.ctx;
    const color = this.tool === "region" ? COLORS.region[this.newOp] : COLORS.maskStroke;
    const pts = this.pending.map((q) => L.imageToCanvas(t, q));
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    pts.forEach(([x, y], i) => (i === 0 ? ctx.moveTo(x, y) : ctx.lineTo(x, y)));
    if (this.cursor) {
      const [x, y] = L.imageToCanvas(t, this.cursor);
      ctx.lineTo(x, y);
    }
    ctx.stroke();
    pts.forEach((q, i) => this.drawDot(q, i === 0 ? 5 : 3, color));
  }

  drawHover(t, doc, hit) {
    let p = null;
    if (hit.kind === "handle" || hit.kind === "target") p = doc.drags[hit.index]?.[hit.kind];
    else if (hit.kind === "region-begin") p = doc.regions[hit.index]?.begin;
    else if (hit.kind === "region-target") p = doc.regions[hit.index]?.target;
    else if (hit.kind === "region-anchor") p = doc.regions[hit.index]?.anchor;
    else if (hit.kind === "region-vertex") p = doc.regions[hit.index]?.mask.polygons[hit.polygon]?.[hit.vertex];
    else if (hit.kind === "mask-vertex") p = doc.mask?.polygons[hit.polygon]?.[hit.vertex];
    if (!p) return;
    const [x, y] = L.imageToCanvas(t, p);
    const ctx = this.ctx;
    ctx.strokeStyle = COLORS.hover;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.arc(x, y, POINT_RADIUS + 4, 0, 2 * Math.PI);
    ctx.stroke();
  }

  /** One or two lines under the canvas: warnings, then validation errors, else a hint. */
  updateStatus() {
    const doc = this.history?.present;
    let text;
    let color = "#aaa";
    const errors = doc ? L.validateDocument(doc) : [];
    if (this.warning) {
      text = this.warning;
      color = "#ffb347";
    } else if (errors.length) {
      text = errors[0] + (errors.length > 1 ? ` (+${errors.length - 1} more)` : "");
      color = "#ff6b6b";
    } else if (doc) {
      const hints = {
        drag: "click-drag handle -> target; click: anchor (fixed point); drag points to move; right-click deletes; Ctrl+Z / Ctrl+Shift+Z",
        mask: "click vertices of the editable region; double-click closes; right-click deletes",
        region: "click vertices; double-click closes; drag the arrow head; Shift+click sets the anchor",
      };
      const counts = `${doc.drags.length} drag(s), ${doc.regions.length} region(s), mask ${doc.mask ? doc.mask.polygons.length : 0} polygon(s), ${doc.image_size[0]}x${doc.image_size[1]}`;
      text = `${counts} | ${hints[this.tool]}`;
    } else {
      text = "no image yet";
    }
    const full = [this.warning, ...errors].filter(Boolean).join("\n") || text;
    if (this.status.textContent !== text) this.status.textContent = text;
    this.status.title = full;
    this.status.style.color = color;
  }
}
