/**
 * ComfyUI frontend extension: the canvas editor on the "FluxDrag Drag Editor" node
 * (Python node_id FluxDragDragEditor).
 *
 * The Python node declares a hidden STRING widget `drags` holding the JSON document (contract in
 * fluxdrag/logic.js) and an IMAGE input `image` (+ optional MASK `mask`). This file hides the raw
 * widget (its value is kept: it is what the workflow saves and the API format sends), adds the
 * DOM canvas widget of fluxdrag/editor.js, and forwards node events to it.
 */

import { app } from "../../scripts/app.js";
import { DragEditor } from "./fluxdrag/editor.js";

const NODE_ID = "FluxDragDragEditor";
const DRAGS_WIDGET = "drags";
// `image_size` may exist on the Python side; the editor ignores it and only hides it.
const HIDDEN_WIDGETS = [DRAGS_WIDGET, "image_size"];
const MIN_EDITOR_HEIGHT = 260;
// A new node before its image arrives: a 400 px square canvas at 100 % zoom (then it fits itself to
// the image's aspect). scripts/api_to_ui.py writes the same size into the shipped layouts.
const DEFAULT_NODE_SIZE = [440, 580];

// The editors on the page. A pointerdown on another node's DOM widget that lies over an editor's
// canvas (ComfyUI stacks DOM widgets in node order, so e.g. a text box of a node added later covers
// the canvas) goes to the editor: it takes the press, and its node comes to the front.
const editors = new Set();

function claimPointer(e) {
  if (!e.target?.closest?.(".dom-widget")) return; // only node widgets: not menus, dialogs, the graph
  let claim = null;
  for (const ed of editors) if (ed.claimsPointer(e)) claim = ed;
  claim?.takePointer(e);
}
document.addEventListener("pointerdown", claimPointer, true);

/** Wrap prototype[name] so the original (if any) runs first, then fn; the result is kept. */
function chainCallback(prototype, name, fn) {
  const original = prototype[name];
  prototype[name] = function (...args) {
    const result = original?.apply(this, args);
    fn.apply(this, args);
    return result;
  };
}

/** Hide a widget from the node body but keep it (and its value) for saving and queueing. */
function hideWidget(widget) {
  widget.hidden = true; // LiteGraph in ComfyUI frontend >= 1.16: not drawn, no layout space
  widget.options = widget.options ?? {};
  widget.options.hidden = true; // Vue node renderer
  widget.computeSize = () => [0, -4]; // older frontends: zero height
}

/** Tell ComfyUI the graph changed (redraw; mark the workflow modified / record graph undo). */
function notifyGraphChanged(node) {
  node.setDirtyCanvas?.(true, true);
  app.extensionManager?.workflow?.activeWorkflow?.changeTracker?.checkState?.();
}

app.registerExtension({
  name: "FluxDrag.DragEditor",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_ID) return;

    chainCallback(nodeType.prototype, "onNodeCreated", function () {
      const dragsWidget = this.widgets?.find((w) => w.name === DRAGS_WIDGET);
      if (!dragsWidget) {
        console.error(`[FluxDrag] ${NODE_ID} has no "${DRAGS_WIDGET}" widget; the drag editor is disabled`);
        return;
      }
      for (const w of this.widgets) if (HIDDEN_WIDGETS.includes(w.name)) hideWidget(w);

      const editor = new DragEditor({ node: this, dragsWidget, app, onChange: () => notifyGraphChanged(this) });
      // The DOM widget carries no value of its own: not in widgets_values, not in the API prompt.
      const widget = this.addDOMWidget("drag_editor", "fluxdrag_editor", editor.element, {
        serialize: false,
        getValue: () => "",
        setValue: () => {},
        getMinHeight: () => MIN_EDITOR_HEIGHT,
      });
      widget.serialize = false;
      this.fluxDragEditor = editor;
      editors.add(editor);
      this.setSize?.([Math.max(this.size[0], DEFAULT_NODE_SIZE[0]), Math.max(this.size[1], DEFAULT_NODE_SIZE[1])]);
      editor.autoFit = true; // a new node fits itself to its first image (not a loaded one)
    });

    // Workflow loaded / node pasted: the widget values were just restored.
    chainCallback(nodeType.prototype, "onConfigure", function () {
      if (this.fluxDragEditor) this.fluxDragEditor.autoFit = false; // the saved size stays
      this.fluxDragEditor?.loadFromWidget();
      this.fluxDragEditor?.onConnectionsChange();
    });

    chainCallback(nodeType.prototype, "onConnectionsChange", function () {
      this.fluxDragEditor?.onConnectionsChange();
    });

    chainCallback(nodeType.prototype, "onExecuted", function (output) {
      this.fluxDragEditor?.onExecuted(output);
    });

    chainCallback(nodeType.prototype, "onRemoved", function () {
      editors.delete(this.fluxDragEditor);
      this.fluxDragEditor?.destroy();
    });
  },
});
