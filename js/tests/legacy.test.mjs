// Tests of js/fluxdrag/legacy.js (older UI workflows' moved widget values). Run: node --test js/tests/
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";

import * as G from "../fluxdrag/legacy.js";

const DATA = new URL("../../tests/data/widgets_before_issue25.json", import.meta.url);

test("the old widget table is the recorded one (commit 6b966f7)", () => {
  const recorded = JSON.parse(fs.readFileSync(DATA, "utf-8")).widgets;
  const withWidgets = Object.fromEntries(Object.entries(recorded).filter(([, v]) => v.length));
  assert.deepEqual(G.OLD_WIDGETS, withWidgets);
});

test("an old AttentionDrag list: the moved values by name, the main ones left alone", () => {
  const saved = [28, 0.7, "auto", 2.0, "query", "auto", 0, false, 1.0, "uni_inv", "simple", 2.5];
  const now = ["steps", "strength", "layer", "seed"];
  const moved = G.movedWidgetValues("FluxDragAttentionDrag", saved, now);
  assert.deepEqual(Object.keys(moved), ["tau", "direction", "mask_source", "dilate", "rigid", "cfg", "solver",
    "scheduler", "inversion_guidance"]);
  assert.equal(moved.inversion_guidance, 2.5);
  assert.equal(moved.tau, 2.0);
});

test("the seed's companion is never a setting; a list saved today is not the old layout", () => {
  const saved = [3, "linear", 0, "fixed", "cached", "pixel", "backward", 0.25, 64];
  const moved = G.movedWidgetValues("FluxDragCorrespondenceMap", saved, ["transition_width", "activation", "seed",
    "control_after_generate"]);
  assert.ok(!("control_after_generate" in moved));
  assert.equal(moved.mapping, "backward");
  assert.deepEqual(G.movedWidgetValues("FluxDragCorrespondenceMap", saved.slice(0, 4), ["transition_width"]), {});
  assert.deepEqual(G.movedWidgetValues("SomeOtherNode", saved, []), {});
  assert.deepEqual(G.movedWidgetValues("FluxDragAttentionDrag", undefined, []), {});
});

test("keep_cache (retired, no effect) is dropped without a message", () => {
  assert.deepEqual(G.movedWidgetValues("FluxDragSampleFromInversion", ["auto", 1.0, true], ["solver", "cfg"]), {});
});

test("only values that differ from the Options node's own are kept; the message names node, values, fix", () => {
  const kept = G.changedValues({ tau: 2.0, inversion_guidance: 2.5, gone: 1 }, { tau: 2.0, inversion_guidance: 3.5 });
  assert.deepEqual(kept, { inversion_guidance: 2.5 });
  const msg = G.legacyMessage("AttentionDrag", "FluxDrag AttentionDrag Options", kept, { gone: 1 });
  assert.match(msg, /^AttentionDrag: .*inversion_guidance = 2\.5.*added FluxDrag AttentionDrag Options node connected/);
  assert.match(msg, /gone = 1 could not be kept/);
  assert.equal(G.legacyMessage("X", "O", {}), "");
});
