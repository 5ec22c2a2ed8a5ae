/**
 * Older UI workflows: those saved before the expert widgets moved to the "FluxDrag … Options" nodes
 * (issue 25). The frontend stores a node's widget values as a list in widget order and restores
 * them by position; every node's widgets today are the first of its widgets then, in the same
 * order, so the main widgets keep their values and the values of the widgets that moved are left
 * over at the end of the list. This module (pure, no ComfyUI) names those left-over values; the
 * extension in ../fluxdrag_legacy.js puts them on an Options node connected to the node and says so.
 */

/** Widget names of each pack node before issue 25 (commit 6b966f7), in the order the frontend
 * saved ``widgets_values`` (``control_after_generate``: the seed widget's companion). */
export const OLD_WIDGETS = {
  FluxDragUniInvSampler: ["zero_init"],
  FluxDragInvert: ["steps", "solver", "strength", "scheduler", "guidance", "cache_policy", "cache_budget_gb"],
  FluxDragSampleFromInversion: ["solver", "cfg", "keep_cache"],
  FluxDragInstructionsJSON: ["drags_json"],
  FluxDragInstructionsFromPoints: ["points", "mode"],
  FluxDragCorrespondenceMap: ["transition_width", "activation", "seed", "control_after_generate", "background_query", "resolution", "mapping", "rigid_tolerance", "gate_reference"],
  FluxDragLazyDragPatch: ["background", "identity", "refine", "mask_text", "h_max", "hold", "end", "background_lock", "content_lock", "hole_lock", "lock_margin"],
  FluxDragDragEditor: ["drags"],
  FluxDragReverseMapping: ["anchor", "hull", "power"],
  FluxDragContextTokenInjection: ["mode", "visible_to", "double_blocks", "single_blocks", "start", "end", "reference_index"],
  FluxDragPositionConsistentAttention: ["rewrite_ids", "hide", "hide_from", "collision", "double_blocks", "single_blocks", "start", "end", "reference_index"],
  FluxDragAttentionDrag: ["steps", "strength", "layer", "tau", "direction", "mask_source", "dilate", "rigid", "cfg", "solver", "scheduler", "inversion_guidance"],
  FluxDragRegionInstruction: ["op", "begin_x", "begin_y", "target_x", "target_y", "anchor_x", "anchor_y"],
  FluxDragRegionAffineOptimise: ["steps", "skip_steps", "scheduler", "guidance", "n_transport", "n_intensify", "optimizer", "adam_lr", "lr", "adaptive_weights", "scale_rule", "feature_scale", "feature_grid", "kv_preset", "kv_custom", "kv_scope", "background", "hole_fill", "hole_release", "init", "edit_region", "edit_dilate", "eta", "inject_text", "early_exit", "gradient_checkpointing", "activations", "cache_policy", "cache_budget_gb"],
  FluxDragToyModelLoader: ["family", "guidance", "weight_dtype", "model_name"],
  FluxDragToyScene: ["seed", "family", "case"],
};

/** Widgets removed without a successor (they had no effect any more): their saved values are
 * dropped without a word. */
export const RETIRED = { FluxDragSampleFromInversion: ["keep_cache"] };

/**
 * The saved values of widgets a node no longer has, ``{name: value}`` ({} when there are none).
 * ``widgetsValues``: the node's saved list; ``currentNames``: its widgets' names today. Only a
 * list of exactly the old length counts as the old layout (a workflow saved today is shorter).
 */
export function movedWidgetValues(nodeId, widgetsValues, currentNames) {
  const old = OLD_WIDGETS[nodeId];
  if (!old || !Array.isArray(widgetsValues) || widgetsValues.length !== old.length) return {};
  const now = new Set([...(currentNames ?? []), ...(RETIRED[nodeId] ?? [])]);
  const out = {};
  old.forEach((name, i) => {
    if (name !== "control_after_generate" && !now.has(name)) out[name] = widgetsValues[i];
  });
  return out;
}

/** The saved values that differ from an Options node's own (``defaults``: name → value). */
export function changedValues(moved, defaults) {
  const out = {};
  for (const [name, value] of Object.entries(moved)) {
    if (name in defaults && defaults[name] !== value) out[name] = value;
  }
  return out;
}

const fmt = (values) => Object.entries(values).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(", ");

/**
 * The message for one node: what was moved where (``kept``: the values put on the added Options
 * node ``optionsTitle``), and what could not be kept (``dropped``: no such setting any more, or no
 * free ``options`` input) with the fix.
 */
export function legacyMessage(nodeTitle, optionsTitle, kept, dropped = {}) {
  const parts = [];
  if (Object.keys(kept).length) {
    parts.push(`${nodeTitle}: this workflow was saved before the expert settings moved to ${optionsTitle}; ` +
      `its values ${fmt(kept)} were put on an added ${optionsTitle} node connected to the node's 'options' input.`);
  }
  if (Object.keys(dropped).length) {
    parts.push(`${nodeTitle}: saved values ${fmt(dropped)} could not be kept (no such setting on ` +
      `${optionsTitle ?? "an Options node"}, or its 'options' input is already connected); ` +
      `set them on ${optionsTitle ?? "the method's Options node"} if you need them.`);
  }
  return parts.join(" ");
}
