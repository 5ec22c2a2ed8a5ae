/**
 * ComfyUI frontend extension: older UI workflows keep their expert values.
 *
 * A workflow saved before the expert widgets moved to the "FluxDrag … Options" nodes (issue 25)
 * loads with every main widget in place (same order) and the moved values left over at the end of
 * the node's saved list, where the frontend would drop them. After the graph is configured, this
 * puts the ones that differ from today's defaults on a new Options node of the method, connected
 * to the node's `options` input, and says so in a toast and the console (naming the node, the
 * values and where they went). Values with nowhere to go are named with the fix. The logic is in
 * fluxdrag/legacy.js (tested with node --test); an API-format workflow is handled on the server
 * (nodes/common.legacy_options).
 */

import { app } from "../../scripts/app.js";
import { OLD_WIDGETS, changedValues, legacyMessage, movedWidgetValues } from "./fluxdrag/legacy.js";

const optionsNodeOf = {}; // an Options node's output type (FLUXDRAG_<METHOD>_OPTIONS) -> its node id
const pending = [];

function tell(message) {
  console.warn(`[FluxDrag] ${message}`);
  app.extensionManager?.toast?.add?.({ severity: "warn", summary: "FluxDrag: older workflow", detail: message, life: 20000 });
}

function translate({ node, moved }) {
  const title = node.title ?? node.type;
  const slot = node.inputs?.findIndex((i) => i.name === "options") ?? -1;
  const input = slot >= 0 ? node.inputs[slot] : null;
  const optionsId = input ? optionsNodeOf[input.type] : undefined;
  if (!optionsId || input.link != null) {
    tell(legacyMessage(title, null, {}, moved));
    return;
  }
  const options = LiteGraph.createNode(optionsId);
  const defaults = Object.fromEntries((options.widgets ?? []).map((w) => [w.name, w.value]));
  const kept = changedValues(moved, defaults);
  const dropped = Object.fromEntries(Object.entries(moved).filter(([k]) => !(k in defaults)));
  if (Object.keys(kept).length) {
    for (const w of options.widgets) if (w.name in kept) w.value = kept[w.name];
    options.pos = [node.pos[0] - (options.size?.[0] ?? 300) - 40, node.pos[1]];
    node.graph.add(options);
    options.connect(0, node, slot);
  }
  if (Object.keys(kept).length || Object.keys(dropped).length) tell(legacyMessage(title, options.title, kept, dropped));
}

app.registerExtension({
  name: "FluxDrag.OlderWorkflows",
  beforeRegisterNodeDef(nodeType, nodeData) {
    const out = nodeData.output?.[0];
    if (typeof out === "string" && /^FLUXDRAG_\w+_OPTIONS$/.test(out)) optionsNodeOf[out] = nodeData.name;
    if (!OLD_WIDGETS[nodeData.name]) return;
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function (info) {
      const result = onConfigure?.apply(this, arguments);
      const moved = movedWidgetValues(nodeData.name, info?.widgets_values, (this.widgets ?? []).map((w) => w.name));
      if (Object.keys(moved).length) pending.push({ node: this, moved });
      return result;
    };
  },
  afterConfigureGraph() {
    while (pending.length) {
      const item = pending.shift();
      try {
        translate(item);
      } catch (e) {
        console.warn("[FluxDrag] could not carry an older workflow's values over:", e);
      }
    }
  },
});
