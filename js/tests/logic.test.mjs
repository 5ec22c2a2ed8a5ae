// Tests of the drag editor's pure logic (js/fluxdrag/logic.js). Run: node --test js/tests/
import { test } from "node:test";
import assert from "node:assert/strict";

import * as L from "../fluxdrag/logic.js";

const close = (a, b, eps = 1e-9) => Math.abs(a - b) <= eps;
const assertPointClose = (p, q, eps = 1e-9) =>
  assert.ok(close(p[0], q[0], eps) && close(p[1], q[1], eps), `${JSON.stringify(p)} != ${JSON.stringify(q)}`);

/** A document with two drags, a mask polygon and one region on a 640x480 image. */
function sampleDoc() {
  let doc = L.createDocument(640, 480);
  doc = L.addDrag(doc, [100, 120], [160, 120]);
  doc = L.addDrag(doc, [300, 200], [300, 260], { mode: "move", scale: [1.5, 1] });
  doc = L.addMaskPolygon(doc, [[50, 50], [250, 50], [250, 250], [50, 250]]);
  doc = L.addRegion(doc, [[400, 300], [500, 300], [500, 400], [400, 400]], {
    op: "rotate", begin: [450, 350], target: [470, 330], anchor: [450, 350],
  });
  return doc;
}

// ------------------------------------------------------------------ transforms

test("fitTransform letterboxes a wide image into a square view", () => {
  // 800x400 into 400x400: scale 0.5, image 400x200 centred vertically -> bars of 100 px.
  const t = L.fitTransform([800, 400], [400, 400]);
  assert.equal(t.scale, 0.5);
  assert.equal(t.offsetX, 0);
  assert.equal(t.offsetY, 100);
  assert.deepEqual(L.imageToCanvas(t, [0, 0]), [0, 100]);
  assert.deepEqual(L.imageToCanvas(t, [800, 400]), [400, 300]);
});

test("fitTransform letterboxes a tall image with padding", () => {
  // 300x600 into 500x420 with 10 px padding: avail 480x400 -> scale min(1.6, 0.666..) = 2/3.
  const t = L.fitTransform([300, 600], [500, 420], 10);
  assert.ok(close(t.scale, 2 / 3));
  assert.ok(close(t.width, 200) && close(t.height, 400));
  assert.ok(close(t.offsetX, 150) && close(t.offsetY, 10));
});

test("image -> canvas -> image round trip on non-square images", () => {
  for (const [size, view] of [
    [[1024, 576], [420, 380]],
    [[333, 777], [512, 300]],
    [[520, 248], [301, 301]],
  ]) {
    const t = L.fitTransform(size, view, 6);
    for (const p of [[0, 0], [size[0] - 1, size[1] - 1], [17.25, 300.5], [size[0] / 3, size[1] / 7]]) {
      assertPointClose(L.canvasToImage(t, L.imageToCanvas(t, p)), p, 1e-9);
    }
    // The image's corners land inside the view.
    const [x1, y1] = L.imageToCanvas(t, size);
    assert.ok(x1 <= view[0] + 1e-9 && y1 <= view[1] + 1e-9);
  }
});

test("clientToLayout undoes the CSS zoom of the DOM widget", () => {
  // Layout 400x300 shown at zoom 2 (800x600 on screen) at (100, 50).
  const rect = { left: 100, top: 50, width: 800, height: 600 };
  assert.deepEqual(L.clientToLayout(500, 350, rect, 400, 300), [200, 150]);
  assert.deepEqual(L.clientToLayout(100, 50, rect, 400, 300), [0, 0]);
});

test("isInsideImage and clampToImage use 0 <= x < W", () => {
  assert.ok(L.isInsideImage([0, 0], [64, 32]));
  assert.ok(L.isInsideImage([63.9, 31.9], [64, 32]));
  assert.ok(!L.isInsideImage([64, 0], [64, 32]));
  assert.ok(!L.isInsideImage([-0.1, 3], [64, 32]));
  assert.ok(!L.isInsideImage([NaN, 3], [64, 32]));
  assert.deepEqual(L.clampToImage([-5, 40], [64, 32]), [0, 31]);
});

// ------------------------------------------------------------------ snapping

test("snapToGrid puts points on token centres (16j + 8)", () => {
  assert.equal(L.snapToGrid(0), 8);
  assert.equal(L.snapToGrid(15.99), 8);
  assert.equal(L.snapToGrid(16), 24);
  assert.equal(L.snapToGrid(37), 40);
  // The token coordinate of the snapped pixel, p/16 - 0.5, is an integer.
  for (const v of [3, 29, 100, 511]) assert.ok(Number.isInteger(L.snapToGrid(v) / 16 - 0.5));
});

test("quantizePoint rounds, snaps and clamps into the image", () => {
  assert.deepEqual(L.quantizePoint([10.4, 10.6], [64, 64]), [10, 11]);
  assert.deepEqual(L.quantizePoint([10.4, 33], [64, 64], { snap: true }), [8, 40]);
  // 520 wide: the last (partial) token [512, 528) has centre 520, clamped to 519.
  assert.deepEqual(L.quantizePoint([515, 700], [520, 600], { snap: true }), [519, 599]);
  assert.deepEqual(L.quantizePoint([-3, 2], [64, 64], { snap: false }), [0, 2]);
});

// ------------------------------------------------------------------ hit testing

test("geometry helpers", () => {
  assert.equal(L.distanceToSegment([5, 5], [0, 0], [10, 0]), 5);
  assert.equal(L.distanceToSegment([-3, 4], [0, 0], [10, 0]), 5); // clamped to endpoint a
  assert.equal(L.distanceToSegment([3, 4], [0, 0], [0, 0]), 5); // degenerate segment
  const square = [[0, 0], [10, 0], [10, 10], [0, 10]];
  assert.ok(L.pointInPolygon([5, 5], square));
  assert.ok(!L.pointInPolygon([15, 5], square));
  assertPointClose(L.polygonCentroid(square), [5, 5]);
  // Centroid of a triangle = vertex mean.
  assertPointClose(L.polygonCentroid([[0, 0], [6, 0], [0, 3]]), [2, 1]);
});

test("hitTest finds the nearest handle or target within the radius", () => {
  const doc = sampleDoc();
  assert.deepEqual(L.hitTest(doc, [103, 124], 8), { kind: "handle", index: 0, distance: 5 });
  assert.deepEqual(L.hitTest(doc, [300, 257], 8), { kind: "target", index: 1, distance: 3 });
  assert.equal(L.hitTest(doc, [600, 20], 8), null);
});

test("hitTest falls back to the arrow shaft and prefers points", () => {
  const doc = sampleDoc();
  // Midway along drag 0's shaft, 4 px off: no point within 8 px -> the arrow.
  assert.deepEqual(L.hitTest(doc, [130, 124], 8), { kind: "arrow", index: 0, distance: 4 });
  // Near the handle and on the shaft: the point wins.
  assert.equal(L.hitTest(doc, [104, 120], 8).kind, "handle");
});

test("hitTest: a target on top of its handle wins the tie; later drags win ties", () => {
  let doc = L.createDocument(100, 100);
  doc = L.addDrag(doc, [10, 10], [10, 10]);
  assert.equal(L.hitTest(doc, [10, 10], 5).kind, "target");
  doc = L.addDrag(doc, [10, 10], [50, 50]);
  assert.deepEqual(L.hitTest(doc, [10, 12], 5), { kind: "handle", index: 1, distance: 2 });
});

test("hitTest finds polygon vertices and region points, limited by layers", () => {
  const doc = sampleDoc();
  assert.deepEqual(L.hitTest(doc, [252, 48], 8), { kind: "mask-vertex", polygon: 0, vertex: 1, distance: Math.hypot(2, 2) });
  assert.deepEqual(L.hitTest(doc, [501, 401], 8), { kind: "region-vertex", index: 0, polygon: 0, vertex: 2, distance: Math.hypot(1, 1) });
  assert.equal(L.hitTest(doc, [472, 330], 8).kind, "region-target");
  // anchor and begin coincide at [450, 350]: the begin (later layer) wins.
  assert.equal(L.hitTest(doc, [450, 350], 8).kind, "region-begin");
  assert.equal(L.hitTest(doc, [252, 48], 8, { layers: ["drags"] }), null);
});

test("findPolygonAt returns the topmost polygon of a layer", () => {
  const doc = sampleDoc();
  assert.deepEqual(L.findPolygonAt(doc, [100, 100], "mask"), { kind: "mask-polygon", polygon: 0 });
  assert.deepEqual(L.findPolygonAt(doc, [420, 390], "regions"), { kind: "region", index: 0 });
  assert.equal(L.findPolygonAt(doc, [420, 390], "mask"), null);
});

test("polygonClickAction: add, close on first vertex, close/ignore on double-click", () => {
  const pending = [[0, 0], [100, 0], [100, 100]];
  const opts = { radius: 5, now: 1000, lastClickTime: 0 };
  assert.equal(L.polygonClickAction(pending, [50, 50], opts), "add");
  assert.equal(L.polygonClickAction(pending, [2, 1], opts), "close");
  // Second click of a double-click near the last vertex.
  assert.equal(L.polygonClickAction(pending, [101, 100], { ...opts, lastClickTime: 800 }), "close");
  // Same place but slow: a (duplicate) vertex is added.
  assert.equal(L.polygonClickAction(pending, [101, 100], { ...opts, lastClickTime: 100 }), "add");
  assert.equal(L.polygonClickAction([[0, 0]], [1, 0], { ...opts, lastClickTime: 900 }), "ignore");
});

// ------------------------------------------------------------------ document model

test("document edits are immutable", () => {
  const doc = sampleDoc();
  const before = L.serializeDocument(doc);
  const moved = L.movePoint(doc, { kind: "target", index: 0 }, [170, 130]);
  assert.deepEqual(moved.drags[0].target, [170, 130]);
  assert.deepEqual(doc.drags[0].target, [160, 120]);
  assert.equal(moved.drags[1], doc.drags[1]); // untouched parts are shared
  L.deleteRef(doc, { kind: "arrow", index: 1 });
  L.translateRef(doc, { kind: "region", index: 0 }, 5, 5);
  L.clearDocument(doc);
  assert.equal(L.serializeDocument(doc), before);
});

test("movePoint, setDragMode, deleteRef on every kind", () => {
  let doc = sampleDoc();
  doc = L.movePoint(doc, { kind: "mask-vertex", polygon: 0, vertex: 0 }, [40, 40]);
  assert.deepEqual(doc.mask.polygons[0][0], [40, 40]);
  doc = L.movePoint(doc, { kind: "region-anchor", index: 0 }, [410, 310]);
  assert.deepEqual(doc.regions[0].anchor, [410, 310]);
  doc = L.setDragMode(doc, 0, "move", [2, 2]);
  assert.equal(doc.drags[0].mode, "move");
  assert.deepEqual(doc.drags[0].scale, [2, 2]);

  assert.equal(L.deleteRef(doc, { kind: "handle", index: 0 }).drags.length, 1);
  assert.equal(L.deleteRef(doc, { kind: "region-anchor", index: 0 }).regions[0].anchor, null);
  // Removing a vertex of a square leaves a triangle; removing another deletes the polygon.
  let d2 = L.deleteRef(doc, { kind: "mask-vertex", polygon: 0, vertex: 0 });
  assert.equal(d2.mask.polygons[0].length, 3);
  d2 = L.deleteRef(d2, { kind: "mask-vertex", polygon: 0, vertex: 0 });
  assert.equal(d2.mask, null);
  let d3 = L.deleteRef(doc, { kind: "region-vertex", index: 0, polygon: 0, vertex: 0 });
  d3 = L.deleteRef(d3, { kind: "region-vertex", index: 0, polygon: 0, vertex: 0 });
  assert.equal(d3.regions.length, 0);
  assert.equal(L.deleteRef(doc, { kind: "mask-polygon", polygon: 0 }).mask, null);
  assert.ok(L.isEmptyDocument(L.clearDocument(doc)));
  assert.deepEqual(L.clearDocument(doc).image_size, [640, 480]);
});

test("translateRef moves a whole drag or region and stays inside the image", () => {
  const doc = sampleDoc();
  const moved = L.translateRef(doc, { kind: "arrow", index: 0 }, 10, -5);
  assert.deepEqual(moved.drags[0].handle, [110, 115]);
  assert.deepEqual(moved.drags[0].target, [170, 115]);
  // Pushing far right clamps at x = W - 1 for the rightmost point.
  const far = L.translateRef(doc, { kind: "arrow", index: 0 }, 10000, 0);
  assert.deepEqual(far.drags[0].target, [639, 120]);
  assert.deepEqual(far.drags[0].handle, [579, 120]);
  const region = L.translateRef(doc, { kind: "region", index: 0 }, -20, 0).regions[0];
  assert.deepEqual(region.begin, [430, 350]);
  assert.deepEqual(region.anchor, [430, 350]);
  assert.deepEqual(region.mask.polygons[0][0], [380, 300]);
});

test("addRegion defaults begin and target to the polygon centroid", () => {
  const doc = L.addRegion(L.createDocument(100, 100), [[10, 10], [30, 10], [30, 30], [10, 30]]);
  assert.deepEqual(doc.regions[0].begin, [20, 20]);
  assert.deepEqual(doc.regions[0].target, [20, 20]);
  assert.equal(doc.regions[0].op, "relocate");
  assert.equal(doc.regions[0].anchor, null);
  // begin == target is reported until the user drags the arrow.
  assert.match(L.validateDocument(doc)[0], /region #1 \(index 0\): begin equals target/);
});

// ------------------------------------------------------------------ undo / redo

test("undo/redo sequence", () => {
  const d0 = L.createDocument(64, 64);
  const d1 = L.addDrag(d0, [1, 1], [5, 5]);
  const d2 = L.addDrag(d1, [10, 10], [20, 20]);
  let h = L.createHistory(d0);
  assert.ok(!L.canUndo(h) && !L.canRedo(h));
  h = L.pushState(h, d1);
  h = L.pushState(h, d2);
  h = L.undo(h);
  assert.equal(h.present, d1);
  h = L.undo(h);
  assert.equal(h.present, d0);
  assert.equal(L.undo(h), h); // nothing left to undo
  h = L.redo(h);
  assert.equal(h.present, d1);
  assert.ok(L.canRedo(h));
  // A new edit after undo drops the redo branch.
  const d3 = L.clearDocument(d1);
  h = L.pushState(h, d3);
  assert.ok(!L.canRedo(h));
  assert.equal(L.redo(h), h);
  h = L.undo(h);
  assert.equal(h.present, d1);
  // Pushing the present itself is a no-op.
  assert.equal(L.pushState(h, h.present), h);
});

test("history keeps at most `limit` undo steps", () => {
  let h = L.createHistory(0, { limit: 3 });
  for (let i = 1; i <= 5; i++) h = L.pushState(h, i);
  assert.deepEqual(h.past, [2, 3, 4]);
  h = L.undo(L.undo(L.undo(h)));
  assert.equal(h.present, 2);
  assert.ok(!L.canUndo(h));
  assert.deepEqual(L.mapHistory(h, (s) => s * 10).future, [30, 40, 50]);
});

// ------------------------------------------------------------------ JSON

test("JSON round trip keeps every field", () => {
  const doc = sampleDoc();
  const text = L.serializeDocument(doc);
  const back = L.parseDocument(text);
  assert.deepEqual(back, doc);
  assert.equal(L.serializeDocument(back), text);
  const obj = JSON.parse(text);
  assert.deepEqual(Object.keys(obj), ["version", "image_size", "drags", "mask", "regions"]);
  assert.deepEqual(obj.drags[1], { handle: [300, 200], target: [300, 260], mode: "move", scale: [1.5, 1] });
  assert.deepEqual(L.validateDocument(back), []);
});

test("parse fills defaults and treats blank values as no document", () => {
  const doc = L.parseDocument('{"version": 1, "image_size": [64, 32], "drags": [{"handle": [1, 2], "target": [3, 4]}]}');
  assert.deepEqual(doc, {
    version: 1, image_size: [64, 32],
    drags: [{ handle: [1, 2], target: [3, 4], mode: "drag", scale: [1, 1] }],
    mask: null, regions: [],
  });
  assert.equal(L.parseDocument(""), null);
  assert.equal(L.parseDocument("  "), null);
  assert.equal(L.parseDocument("{}"), null);
  assert.equal(L.parseDocument('{"version": 1, "image_size": [0, 0], "drags": []}'), null);
  // A uniform scale number is accepted.
  const s = L.parseDocument('{"version":1,"image_size":[8,8],"drags":[{"handle":[1,1],"target":[2,2],"mode":"move","scale":2}]}');
  assert.deepEqual(s.drags[0].scale, [2, 2]);
});

test("parse reports structural errors", () => {
  const bad = [
    ["not json", /not valid JSON/],
    ["[1, 2]", /must be an object/],
    ['{"version": 2, "image_size": [8, 8], "drags": []}', /unsupported drags JSON version 2/],
    ['{"version": 1, "image_size": [8.5, 8], "drags": [{"handle": [1, 1], "target": [2, 2]}]}', /image_size/],
    ['{"version": 1, "image_size": [8, 8], "drags": [{"handle": [1], "target": [2, 2]}]}', /drag #1 \(index 0\): handle must be a list/],
    ['{"version": 1, "image_size": [8, 8], "drags": [{"handle": [1, 1], "target": ["a", 2]}]}', /drag #1 \(index 0\): target must hold numbers/],
    ['{"version": 1, "image_size": [8, 8], "drags": [], "regions": [{"op": "deform", "begin": [1, 1], "target": [2, 2]}]}', /region #1 \(index 0\): mask/],
  ];
  for (const [text, re] of bad) {
    assert.throws(() => L.parseDocument(text), (err) => err instanceof L.DragDocumentError && re.test(err.message), text);
  }
});

test("anchors: a handle on its target holds its point; only anchors is refused", () => {
  let doc = L.createDocument(64, 64);
  doc = L.addDrag(doc, [1, 1], [9, 9]);
  doc = L.addDrag(doc, [20, 20], [20, 20]); // DragBench's fixed point: valid
  doc = L.addAnchor(doc, [30, 40]);
  assert.deepEqual(L.validateDocument(doc), []);
  assert.deepEqual(doc.drags[2], { handle: [30, 40], target: [30, 40], mode: "anchor", scale: [1, 1] });
  assert.ok(L.isAnchor(doc.drags[1]) && L.isAnchor(doc.drags[2]) && !L.isAnchor(doc.drags[0]));
  // moving an anchor's point moves both (it stays an anchor)
  const moved = L.movePoint(doc, { kind: "target", index: 2 }, [33, 44]);
  assert.deepEqual([moved.drags[2].handle, moved.drags[2].target], [[33, 44], [33, 44]]);
  // the JSON form: "mode": "anchor", target optional, round trip
  const parsed = L.parseDocument(JSON.stringify({ version: 1, image_size: [64, 64],
    drags: [{ handle: [5, 6], mode: "anchor" }, { handle: [1, 1], target: [9, 9] }] }));
  assert.deepEqual(parsed.drags[0].target, [5, 6]);
  assert.deepEqual(L.parseDocument(L.serializeDocument(parsed)), parsed);
  const wrong = { ...parsed, drags: [{ ...parsed.drags[0], target: [7, 7] }, parsed.drags[1]] };
  assert.match(L.validateDocument(wrong)[0], /^drag #1 \(index 0\): an anchor holds its handle \[5, 6\]/);
  const only = L.addAnchor(L.addAnchor(L.createDocument(64, 64), [1, 1]), [2, 2]);
  assert.match(L.validateDocument(only)[0], /^only anchors \(2 fixed points\): nothing would move/);
});

test("validation: point outside the image names the drag and the bounds", () => {
  let doc = L.createDocument(64, 48);
  doc = L.addDrag(doc, [1, 1], [64, 10]); // x == W is outside
  doc = L.addDrag(doc, [-1, 5], [9, 9]);
  const errors = L.validateDocument(doc);
  assert.equal(errors.length, 2);
  assert.match(errors[0], /^drag #1 \(index 0\): target \[64, 10\] is outside the 64x48 image/);
  assert.match(errors[1], /^drag #2 \(index 1\): handle \[-1, 5\] is outside/);
});

test("validation: NaN / Infinity / null coordinates", () => {
  let doc = L.createDocument(64, 64);
  doc = L.addDrag(doc, [NaN, 1], [9, 9]);
  assert.match(L.validateDocument(doc)[0], /^drag #1 \(index 0\): handle has a non-finite coordinate \[NaN, 1\]/);
  // Python's json.dumps writes NaN / Infinity tokens; they parse and are reported.
  const text = '{"version": 1, "image_size": [64, 64], "drags": [{"handle": [1, 1], "target": [Infinity, -Infinity]}, {"handle": [2, 2], "target": [NaN, 3]}], "mask": null, "regions": []}';
  const parsed = L.parseDocument(text);
  const errors = L.validateDocument(parsed);
  assert.equal(errors.length, 2);
  assert.match(errors[0], /^drag #1 \(index 0\): target has a non-finite coordinate/);
  assert.match(errors[1], /^drag #2 \(index 1\): target has a non-finite coordinate/);
  // ... but not inside strings.
  assert.equal(L.replaceNonFiniteTokens('{"a": "NaN \\" Infinity", "b": NaN}'), '{"a": "NaN \\" Infinity", "b": null}');
});

test("validation: mode, scale, polygons, regions and empty drag list", () => {
  let doc = L.createDocument(64, 64);
  assert.deepEqual(L.validateDocument(doc), []);
  assert.match(L.validateDocument(doc, { requireDrags: true })[0], /^no drags/);
  doc = L.addDrag(doc, [1, 1], [9, 9], { mode: "fly", scale: [0, 1] });
  doc = L.addMaskPolygon(doc, [[1, 1], [5, 5]]);
  doc = L.addRegion(doc, [[1, 1], [10, 1], [10, 10]], { op: "spin", begin: [2, 2], target: [70, 2], anchor: [3, 3] });
  const errors = L.validateDocument(doc);
  assert.equal(errors.length, 5);
  assert.match(errors[0], /drag #1 \(index 0\): unknown mode "fly"/);
  assert.match(errors[1], /drag #1 \(index 0\): scale \[0, 1\]/);
  assert.match(errors[2], /mask polygon #1 \(index 0\): polygon 0 has 2 vertices/);
  assert.match(errors[3], /region #1 \(index 0\): unknown op "spin"/);
  assert.match(errors[4], /region #1 \(index 0\): target \[70, 2\] is outside/);
});

// ------------------------------------------------------------------ rescale

test("rescale maps every coordinate and warns", () => {
  const doc = sampleDoc(); // 640x480
  const { doc: out, warning } = L.rescaleDocument(doc, [1280, 720]); // x*2, y*1.5
  assert.deepEqual(out.image_size, [1280, 720]);
  assert.deepEqual(out.drags[0].handle, [200, 180]);
  assert.deepEqual(out.drags[1].target, [600, 390]);
  assert.deepEqual(out.drags[1].scale, [1.5, 1]); // move-mode scale is not a coordinate
  assert.deepEqual(out.mask.polygons[0][2], [500, 375]);
  assert.deepEqual(out.regions[0].anchor, [900, 525]);
  assert.match(warning, /image size changed from 640x480 to 1280x720: 2 drags, 1 region, the mask rescaled/);
  assert.match(warning, /aspect ratio changed/);
  assert.deepEqual(L.validateDocument(out), []);
  // The input is untouched.
  assert.deepEqual(doc.image_size, [640, 480]);
});

test("rescale: same size, empty document, uniform scale, collapsed drags, clamping", () => {
  const doc = sampleDoc();
  assert.deepEqual(L.rescaleDocument(doc, [640, 480]), { doc, warning: null });
  const empty = L.rescaleDocument(L.createDocument(10, 10), [20, 30]);
  assert.equal(empty.warning, null);
  assert.deepEqual(empty.doc.image_size, [20, 30]);

  const half = L.rescaleDocument(doc, [320, 240]);
  assert.doesNotMatch(half.warning, /aspect ratio/);
  assert.deepEqual(half.doc.drags[0].handle, [50, 60]);

  let tiny = L.createDocument(100, 100);
  tiny = L.addDrag(tiny, [10, 10], [10.4, 10]);
  tiny = L.addDrag(tiny, [99, 99], [50, 50]);
  const r = L.rescaleDocument(tiny, [2, 2]);
  // 10*0.02 = 0.2 and 10.4*0.02 = 0.21 (rounded to 0.01): still distinct; 99 -> 1.98 clamped to 1.
  assert.deepEqual(r.doc.drags[1].handle, [1, 1]);
  const collapse = L.rescaleDocument(L.addDrag(L.createDocument(1000, 1000), [100, 100], [100.1, 100]), [10, 10]);
  assert.match(collapse.warning, /drag #1 \(index 0\) now has handle == target \(an anchor/);
});

// ------------------------------------------------------------------ image references

test("parseImageWidgetValue and viewQuery", () => {
  assert.deepEqual(L.parseImageWidgetValue("photo.png"), { filename: "photo.png", subfolder: "", type: "input" });
  assert.deepEqual(L.parseImageWidgetValue("clipspace/mask 1.png [input]"), { filename: "mask 1.png", subfolder: "clipspace", type: "input" });
  assert.deepEqual(L.parseImageWidgetValue("a/b/c.webp [output]"), { filename: "c.webp", subfolder: "a/b", type: "output" });
  assert.equal(L.parseImageWidgetValue(""), null);
  assert.equal(L.viewQuery({ filename: "mask 1.png", subfolder: "clipspace", type: "input" }), "/view?filename=mask+1.png&type=input&subfolder=clipspace");
});

// ------------------------------------------------------------------ node size (fit-to-node)

test("editorNodeSize gives the canvas the image's aspect at the requested side", () => {
  const chrome = [20, 150];
  // square image: canvas side*side plus padding, plus the chrome
  assert.deepEqual(L.editorNodeSize([256, 256], chrome, { side: 400, padding: 6 }), [432, 562]);
  // wide image: the longer side is the width
  assert.deepEqual(L.editorNodeSize([800, 400], chrome, { side: 400 }), [420, 350]);
  // tall image
  assert.deepEqual(L.editorNodeSize([300, 600], chrome, { side: 400 }), [220, 550]);
  // the toolbar's minimum width wins over a very tall image's narrow canvas
  assert.deepEqual(L.editorNodeSize([100, 1000], chrome, { side: 400, minWidth: 380 }), [380, 550]);
  // no image yet: a square canvas
  assert.deepEqual(L.editorNodeSize(null, chrome, { side: 400 }), [420, 550]);
  // the default side is at least 384 px
  assert.ok(L.EDITOR_IMAGE_SIDE >= 384);
});

test("rectContains: inside, edges, empty rects", () => {
  const r = { left: 10, top: 20, width: 100, height: 50 };
  assert.ok(L.rectContains(r, 10, 20));
  assert.ok(L.rectContains(r, 109.5, 69.5));
  assert.ok(!L.rectContains(r, 110, 40));
  assert.ok(!L.rectContains(r, 50, 19));
  assert.ok(!L.rectContains({ left: 0, top: 0, width: 0, height: 0 }, 0, 0));
});

test("rotation instruction: angle on a move drag, written only when non-zero, round-trips", () => {
  let doc = L.createDocument(256, 256);
  doc = L.addDrag(doc, [100, 100], [140, 100], { mode: "move", angle: 30 });
  doc = L.addDrag(doc, [20, 20], [40, 40]);
  assert.equal(doc.drags[0].angle, 30);
  assert.equal("angle" in doc.drags[1], false);
  const text = L.serializeDocument(doc);
  const obj = JSON.parse(text);
  assert.equal(obj.drags[0].angle, 30);
  assert.equal("angle" in obj.drags[1], false);
  assert.deepEqual(L.parseDocument(text), doc);
  assert.deepEqual(L.validateDocument(doc), []);
  // set, clear, and dropped when the drag becomes elastic
  const set = L.setDragAngle(doc, 0, -45);
  assert.equal(set.drags[0].angle, -45);
  assert.equal("angle" in L.setDragAngle(doc, 0, 0).drags[0], false);
  assert.equal(L.setDragAngle(doc, 1, 10), doc); // an elastic drag cannot rotate
  assert.equal("angle" in L.setDragMode(set, 0, "drag").drags[0], false);
});

test("rotation instruction: validation", () => {
  let doc = L.createDocument(64, 64);
  doc = L.addDrag(doc, [10, 10], [10, 10], { mode: "move", angle: 90 }); // rotate in place: fine
  assert.deepEqual(L.validateDocument(doc), []);
  const bad = L.parseDocument('{"version":1,"image_size":[64,64],"drags":[{"handle":[1,1],"target":[9,9],"angle":20}]}');
  assert.match(L.validateDocument(bad)[0], /angle needs mode "move"/);
});

test("depth intent: on drags and regions, written only when not auto, round-trips", () => {
  let doc = L.createDocument(256, 256);
  doc = L.addDrag(doc, [100, 100], [140, 100], { mode: "move", depth: "behind" });
  doc = L.addDrag(doc, [20, 20], [40, 40], { depth: "auto" });
  doc = L.addRegion(doc, [[10, 10], [50, 10], [50, 50]], { target: [90, 30] });
  assert.equal(doc.drags[0].depth, "behind");
  assert.equal("depth" in doc.drags[1], false);
  doc = L.setRegionDepth(doc, 0, "front");
  const text = L.serializeDocument(doc);
  const obj = JSON.parse(text);
  assert.equal(obj.drags[0].depth, "behind");
  assert.equal("depth" in obj.drags[1], false);
  assert.equal(obj.regions[0].depth, "front");
  assert.deepEqual(L.parseDocument(text), doc);
  assert.deepEqual(L.validateDocument(doc), []);
  // set, cleared by "auto", refused on anchors, dropped when a drag becomes an anchor
  const set = L.setDragDepth(doc, 1, "front");
  assert.equal(set.drags[1].depth, "front");
  assert.equal("depth" in L.setDragDepth(set, 1, "auto").drags[1], false);
  assert.equal("depth" in L.setRegionDepth(doc, 0, "auto").regions[0], false);
  assert.equal(L.setDragDepth(doc, 1, "under"), doc);
  const anchored = L.addAnchor(doc, [200, 200]);
  assert.equal(L.setDragDepth(anchored, 2, "behind"), anchored);
  assert.equal("depth" in L.setDragMode(doc, 0, "anchor").drags[0], false);
  assert.equal(L.addDrag(doc, [5, 5], [5, 5], { mode: "anchor", depth: "behind" }).drags[2].depth, undefined);
  // kept through moves and rescales
  assert.equal(L.rescaleDocument(doc, [512, 512]).doc.drags[0].depth, "behind");
});

test("depth intent: validation names the drag, the value and the choices", () => {
  const bad = L.parseDocument('{"version":1,"image_size":[64,64],"drags":[{"handle":[1,1],"target":[9,9],"depth":"under"}],' +
    '"regions":[{"op":"relocate","mask":{"polygons":[[[1,1],[9,1],[9,9]]]},"begin":[4,4],"target":[20,20],"depth":"over"}]}');
  const errors = L.validateDocument(bad);
  assert.match(errors[0], /drag #1 \(index 0\): unknown depth "under"; use auto, front, behind/);
  assert.ok(errors.some((e) => /region #1 \(index 0\): unknown depth "over"/.test(e)), errors.join("\n"));
  const anchor = L.parseDocument('{"version":1,"image_size":[64,64],"drags":[{"handle":[1,1],"target":[9,9]},{"handle":[5,5],"mode":"anchor","depth":"behind"}]}');
  assert.match(L.validateDocument(anchor)[0], /anchor does not move/);
});
