/**
 * Pure logic of the FluxDrag drag editor (no DOM, no ComfyUI imports).
 *
 * Everything here is plain data in, plain data out, so it runs under
 * `node --test` (js/tests/logic.test.mjs) as well as in the browser:
 *
 *   - coordinate transforms image <-> canvas (the image is letterboxed into the widget),
 *   - snapping to the FLUX token grid (16 px),
 *   - hit testing (points, arrows, polygon vertices, polygon interiors),
 *   - an undo/redo history of immutable states,
 *   - the drag document model and its JSON (the contract with the Python node),
 *   - rescaling a document when the image size changes.
 *
 * The JSON contract (version 1, pixel coordinates of the image the drags were drawn on;
 * points are (x, y) = (column, row)):
 *
 *   {"version": 1, "image_size": [W, H],
 *    "drags": [{"handle": [x, y], "target": [x, y], "mode": "drag"|"move"|"anchor", "scale": [sx, sy],
 *               "angle": degrees, "depth": "auto"|"front"|"behind"}],
 *    "mask": null | {"polygons": [[[x, y], ...], ...]},
 *    "regions": [{"op": "relocate"|"deform"|"rotate", "mask": {"polygons": [...]},
 *                 "begin": [x, y], "target": [x, y], "anchor": [x, y] | null,
 *                 "depth": "auto"|"front"|"behind"}]}
 *
 * "angle" (optional, "move" drags only, written only when non-zero) rotates the moved content by
 * that many degrees about the handle, clockwise on screen, before the axis scale.
 * "depth" (optional, drags that move and regions, written only when not "auto") is the user's depth
 * intent where the moved content lands: "behind" = behind the objects at its destination, "front" =
 * over them, "auto" = the method's own depth setting decides.
 *
 * Pixel coordinates are continuous with pixel i spanning [i, i + 1): a point is inside the
 * image when 0 <= x < W and 0 <= y < H. The token (row i, col j) covers pixels
 * [16j, 16j + 16) x [16i, 16i + 16), so its centre is at 16j + 8 (token coordinate p/16 - 0.5).
 *
 * Documents are never mutated: every edit returns a new document (unchanged parts are shared).
 */

export const SCHEMA_VERSION = 1;
/** FLUX: 8 px per latent cell, 2x2 latent cells per token -> 16 px per token. */
export const TOKEN_SIZE = 16;
export const DRAG_MODES = Object.freeze(["drag", "move", "anchor"]);
export const REGION_OPS = Object.freeze(["relocate", "deform", "rotate"]);
/** Per-drag depth intent; "auto" (the method's setting decides) is the default and never written. */
export const DRAG_DEPTHS = Object.freeze(["auto", "front", "behind"]);

/** A structural problem in a drags JSON document (bad JSON, wrong version, wrong shapes). */
export class DragDocumentError extends Error {
  constructor(message) {
    super(message);
    this.name = "DragDocumentError";
  }
}

// ---------------------------------------------------------------------------------------------
// Small geometry helpers
// ---------------------------------------------------------------------------------------------

/** Euclidean distance between two points. */
export function distance(a, b) {
  return Math.hypot(a[0] - b[0], a[1] - b[1]);
}

/** Distance from p to the segment a-b (to a itself when the segment is degenerate). */
export function distanceToSegment(p, a, b) {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const len2 = dx * dx + dy * dy;
  if (len2 === 0) return distance(p, a);
  // Project p onto the infinite line, then clamp the parameter to the segment [0, 1].
  let t = ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2;
  t = Math.max(0, Math.min(1, t));
  return distance(p, [a[0] + t * dx, a[1] + t * dy]);
}

/** Even-odd (ray casting) point-in-polygon test; polygon is [[x, y], ...], implicitly closed. */
export function pointInPolygon(p, polygon) {
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i];
    const [xj, yj] = polygon[j];
    // Does the horizontal ray from p to +x cross edge (j -> i)?
    if (yi > p[1] !== yj > p[1]) {
      const xCross = xj + ((p[1] - yj) * (xi - xj)) / (yi - yj);
      if (p[0] < xCross) inside = !inside;
    }
  }
  return inside;
}

/** Area-weighted centroid of a simple polygon (vertex mean when the area is ~0). */
export function polygonCentroid(polygon) {
  let area2 = 0;
  let cx = 0;
  let cy = 0;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [x0, y0] = polygon[j];
    const [x1, y1] = polygon[i];
    const cross = x0 * y1 - x1 * y0; // shoelace term
    area2 += cross;
    cx += (x0 + x1) * cross;
    cy += (y0 + y1) * cross;
  }
  if (Math.abs(area2) < 1e-9) {
    const n = Math.max(polygon.length, 1);
    return [
      polygon.reduce((s, q) => s + q[0], 0) / n,
      polygon.reduce((s, q) => s + q[1], 0) / n,
    ];
  }
  return [cx / (3 * area2), cy / (3 * area2)];
}

// ---------------------------------------------------------------------------------------------
// Coordinate transforms: image pixels <-> canvas (layout) pixels
// ---------------------------------------------------------------------------------------------

/**
 * Letterboxed fit of an image of `imageSize` = [W, H] into a view of `viewSize` = [w, h]
 * (layout pixels), keeping the aspect ratio and centring it, with `padding` px on every side.
 *
 *   canvas = offset + image * scale,   scale = min(availW / W, availH / H)
 */
export function fitTransform(imageSize, viewSize, padding = 0) {
  const [iw, ih] = imageSize;
  const [vw, vh] = viewSize;
  if (!(iw > 0 && ih > 0)) throw new RangeError(`image size must be positive, got ${iw}x${ih}`);
  const availW = Math.max(vw - 2 * padding, 1);
  const availH = Math.max(vh - 2 * padding, 1);
  const scale = Math.min(availW / iw, availH / ih);
  const width = iw * scale;
  const height = ih * scale;
  return {
    scale,
    offsetX: (vw - width) / 2, // bars left/right when the view is wider than the image
    offsetY: (vh - height) / 2, // bars top/bottom when the view is taller
    width,
    height,
    imageWidth: iw,
    imageHeight: ih,
  };
}

/** Longer side of the picture (layout px, i.e. screen px at 100 % graph zoom) a new editor shows. */
export const EDITOR_IMAGE_SIDE = 400;

/**
 * Node size [w, h] at which the editor's canvas shows an image of `imageSize` = [W, H] with its
 * longer side `side` layout px and no letterbox bars (aspect preserved). `chrome` = [dw, dh] is
 * everything the node adds around the canvas (node size minus canvas size: title, sockets,
 * toolbar, status line, margins); `padding` is the canvas's own inner margin (fitTransform's).
 * Widths below `minWidth` are raised (the toolbar needs room); the canvas then letterboxes.
 */
export function editorNodeSize(imageSize, chrome, { side = EDITOR_IMAGE_SIDE, padding = 0, minWidth = 0 } = {}) {
  const [iw, ih] = imageSize ?? [];
  const s = iw > 0 && ih > 0 ? side / Math.max(iw, ih) : 1;
  const [w, h] = iw > 0 && ih > 0 ? [iw * s, ih * s] : [side, side];
  return [Math.max(Math.ceil(w + 2 * padding + chrome[0]), minWidth), Math.ceil(h + 2 * padding + chrome[1])];
}

/** True when the client point (x, y) lies inside `rect` (a DOMRect-like {left, top, width, height}). */
export function rectContains(rect, x, y) {
  return rect.width > 0 && rect.height > 0 &&
    x >= rect.left && x < rect.left + rect.width && y >= rect.top && y < rect.top + rect.height;
}

/** Image pixel coordinates -> canvas layout coordinates. */
export function imageToCanvas(t, p) {
  return [t.offsetX + p[0] * t.scale, t.offsetY + p[1] * t.scale];
}

/** Canvas layout coordinates -> image pixel coordinates (inverse of imageToCanvas). */
export function canvasToImage(t, p) {
  return [(p[0] - t.offsetX) / t.scale, (p[1] - t.offsetY) / t.scale];
}

/**
 * Pointer position (clientX/clientY) -> canvas layout coordinates.
 *
 * ComfyUI positions DOM widgets with a CSS transform that includes the graph zoom, so the
 * on-screen rectangle (`rect`, from getBoundingClientRect) is the layout size times the zoom.
 * Dividing by the on-screen size and multiplying by the layout size undoes that zoom.
 */
export function clientToLayout(clientX, clientY, rect, layoutWidth, layoutHeight) {
  const sx = rect.width > 0 ? layoutWidth / rect.width : 1;
  const sy = rect.height > 0 ? layoutHeight / rect.height : 1;
  return [(clientX - rect.left) * sx, (clientY - rect.top) * sy];
}

/** True when p lies in the image: 0 <= x < W and 0 <= y < H (and is finite). */
export function isInsideImage(p, imageSize) {
  const [x, y] = p;
  return (
    Number.isFinite(x) && Number.isFinite(y) &&
    x >= 0 && y >= 0 && x < imageSize[0] && y < imageSize[1]
  );
}

/** Clamp p to the last pixel of the image: x in [0, W-1], y in [0, H-1]. */
export function clampToImage(p, imageSize) {
  return [
    Math.min(Math.max(p[0], 0), imageSize[0] - 1),
    Math.min(Math.max(p[1], 0), imageSize[1] - 1),
  ];
}

/** Snap one coordinate to the centre of its token cell: floor(v / grid) * grid + grid / 2. */
export function snapToGrid(value, grid = TOKEN_SIZE) {
  return Math.floor(value / grid) * grid + grid / 2;
}

/**
 * Turn a continuous image position (e.g. from canvasToImage) into a stored point:
 * snapped to the token centre when `snap`, otherwise rounded to the nearest integer pixel,
 * then clamped into the image (a partial last token's centre may lie past W - 1).
 */
export function quantizePoint(p, imageSize, { snap = false, grid = TOKEN_SIZE } = {}) {
  const q = snap ? [snapToGrid(p[0], grid), snapToGrid(p[1], grid)] : [Math.round(p[0]), Math.round(p[1])];
  const c = clampToImage(q, imageSize);
  // Clamp may leave a fraction when W - 1 is not reached by the grid; keep integers.
  return [Math.round(c[0]), Math.round(c[1])];
}

// ---------------------------------------------------------------------------------------------
// Document model
// ---------------------------------------------------------------------------------------------

/** A new, empty document for an image of width x height pixels. */
export function createDocument(width, height) {
  return { version: SCHEMA_VERSION, image_size: [width, height], drags: [], mask: null, regions: [] };
}

/** True when the document holds no drags, no mask and no regions. */
export function isEmptyDocument(doc) {
  return doc.drags.length === 0 && doc.regions.length === 0 && (doc.mask === null || doc.mask.polygons.length === 0);
}

const copyPoint = (p) => [p[0], p[1]];
const copyPolygons = (polys) => polys.map((poly) => poly.map(copyPoint));

/**
 * Append a drag handle -> target. Options: mode ("drag" elastic | "move" rigid), scale [sx, sy],
 * angle (degrees, clockwise on screen, "move" only), depth ("auto" | "front" | "behind").
 */
export function addDrag(doc, handle, target, { mode = "drag", scale = [1, 1], angle = 0, depth = "auto" } = {}) {
  const drag = { handle: copyPoint(handle), target: copyPoint(target), mode, scale: copyPoint(scale) };
  if (mode === "move" && angle) drag.angle = angle;
  if (mode !== "anchor" && depth && depth !== "auto") drag.depth = depth;
  return { ...doc, drags: [...doc.drags, drag] };
}

/**
 * Append an anchor: a fixed point whose content stays where it is (handle = target,
 * "mode": "anchor"; the editor places one with a click and no drag).
 */
export function addAnchor(doc, point) {
  const drag = { handle: copyPoint(point), target: copyPoint(point), mode: "anchor", scale: [1, 1] };
  return { ...doc, drags: [...doc.drags, drag] };
}

/** Whether drag d is an anchor (explicit, or a handle on its target that is not a scale/rotation in place). */
export function isAnchor(d) {
  if (d.mode === "anchor") return true;
  const inPlace = d.mode === "move" && ((d.angle ?? 0) % 360 !== 0 || d.scale[0] !== 1 || d.scale[1] !== 1);
  return !inPlace && d.handle[0] === d.target[0] && d.handle[1] === d.target[1];
}

function withoutAngleUnlessMove(d) {
  if (d.mode === "move" || d.angle === undefined) return d;
  const { angle: _dropped, ...rest } = d;
  return rest;
}

/** Set the rotation (degrees, clockwise on screen, about the handle) of move drag i. */
export function setDragAngle(doc, index, angle) {
  const d = doc.drags[index];
  if (!d || d.mode !== "move" || !Number.isFinite(angle)) return doc;
  const drags = doc.drags.map((x, i) => {
    if (i !== index) return x;
    if (angle) return { ...x, angle };
    const { angle: _dropped, ...rest } = x;
    return rest;
  });
  return { ...doc, drags };
}

/** Set the mode (and optionally the axis scale used by "move") of drag i; an anchor keeps no depth. */
export function setDragMode(doc, index, mode, scale = undefined) {
  if (!doc.drags[index]) return doc;
  const drags = doc.drags.map((d, i) => {
    if (i !== index) return d;
    const out = withoutAngleUnlessMove({ ...d, mode, scale: scale ? copyPoint(scale) : d.scale });
    return mode === "anchor" ? withDepth(out, "auto") : out;
  });
  return { ...doc, drags };
}

function withDepth(item, depth) {
  if (depth && depth !== "auto") return { ...item, depth };
  if (item.depth === undefined) return item;
  const { depth: _dropped, ...rest } = item;
  return rest;
}

/**
 * Set the depth intent of drag i ("behind": its moved content goes behind the objects at its
 * destination; "front": over them; "auto": the method's setting decides). Anchors do not move:
 * unchanged.
 */
export function setDragDepth(doc, index, depth) {
  const d = doc.drags[index];
  if (!d || isAnchor(d) || !DRAG_DEPTHS.includes(depth)) return doc;
  return { ...doc, drags: doc.drags.map((x, i) => (i === index ? withDepth(x, depth) : x)) };
}

/** Set the depth intent of region i (as setDragDepth). */
export function setRegionDepth(doc, index, depth) {
  if (!doc.regions[index] || !DRAG_DEPTHS.includes(depth)) return doc;
  return { ...doc, regions: doc.regions.map((r, i) => (i === index ? withDepth(r, depth) : r)) };
}

/** Remove drag i. */
export function deleteDrag(doc, index) {
  if (!doc.drags[index]) return doc;
  return { ...doc, drags: doc.drags.filter((_, i) => i !== index) };
}

/** Add one polygon to the editable-region mask (creating the mask if there is none). */
export function addMaskPolygon(doc, polygon) {
  const polygons = doc.mask ? doc.mask.polygons : [];
  return { ...doc, mask: { polygons: [...polygons, polygon.map(copyPoint)] } };
}

/** Remove mask polygon k; the mask becomes null when no polygon is left. */
export function deleteMaskPolygon(doc, polygonIndex) {
  if (!doc.mask || !doc.mask.polygons[polygonIndex]) return doc;
  const polygons = doc.mask.polygons.filter((_, k) => k !== polygonIndex);
  return { ...doc, mask: polygons.length ? { polygons } : null };
}

/**
 * Add a DragFlow region: a polygon with an operation, a begin -> target arrow and an optional
 * anchor (rotation centre). begin defaults to the polygon centroid, target to begin.
 */
export function addRegion(doc, polygon, { op = "relocate", begin = null, target = null, anchor = null } = {}) {
  const b = begin ? copyPoint(begin) : polygonCentroid(polygon);
  const region = {
    op,
    mask: { polygons: [polygon.map(copyPoint)] },
    begin: b,
    target: target ? copyPoint(target) : copyPoint(b),
    anchor: anchor ? copyPoint(anchor) : null,
  };
  return { ...doc, regions: [...doc.regions, region] };
}

/** Change fields of region i (op, begin, target, anchor). */
export function updateRegion(doc, index, fields) {
  if (!doc.regions[index]) return doc;
  return { ...doc, regions: doc.regions.map((r, i) => (i === index ? { ...r, ...fields } : r)) };
}

/** Remove region i. */
export function deleteRegion(doc, index) {
  if (!doc.regions[index]) return doc;
  return { ...doc, regions: doc.regions.filter((_, i) => i !== index) };
}

/** Remove drags, mask and regions; keep the image size. */
export function clearDocument(doc) {
  return { ...doc, drags: [], mask: null, regions: [] };
}

/** Replace vertex v of a polygon list (returns a new list). */
function replaceVertex(polygons, k, v, p) {
  return polygons.map((poly, pk) => (pk === k ? poly.map((q, qv) => (qv === v ? copyPoint(p) : q)) : poly));
}

/** Remove vertex v of polygon k; a polygon left with fewer than 3 vertices is removed. */
function removeVertex(polygons, k, v) {
  return polygons
    .map((poly, pk) => (pk === k ? poly.filter((_, qv) => qv !== v) : poly))
    .filter((poly, pk) => pk !== k || poly.length >= 3);
}

/**
 * Move the point a hit-test reference names to p.
 * Point kinds: handle, target, region-begin, region-target, region-anchor, region-vertex, mask-vertex.
 */
export function movePoint(doc, ref, p) {
  switch (ref.kind) {
    case "handle":
    case "target": {
      // an anchor is one point: moving it moves both
      const drags = doc.drags.map((d, i) => (i !== ref.index ? d
        : d.mode === "anchor" ? { ...d, handle: copyPoint(p), target: copyPoint(p) } : { ...d, [ref.kind]: copyPoint(p) }));
      return { ...doc, drags };
    }
    case "region-begin":
      return updateRegion(doc, ref.index, { begin: copyPoint(p) });
    case "region-target":
      return updateRegion(doc, ref.index, { target: copyPoint(p) });
    case "region-anchor":
      return updateRegion(doc, ref.index, { anchor: copyPoint(p) });
    case "region-vertex": {
      const r = doc.regions[ref.index];
      return updateRegion(doc, ref.index, { mask: { polygons: replaceVertex(r.mask.polygons, ref.polygon, ref.vertex, p) } });
    }
    case "mask-vertex":
      return { ...doc, mask: { polygons: replaceVertex(doc.mask.polygons, ref.polygon, ref.vertex, p) } };
    default:
      return doc;
  }
}

/** All points a whole-object reference (arrow, region-arrow, region, mask-polygon) carries. */
function pointsOfRef(doc, ref) {
  switch (ref.kind) {
    case "arrow": {
      const d = doc.drags[ref.index];
      return [d.handle, d.target];
    }
    case "region-arrow":
    case "region": {
      const r = doc.regions[ref.index];
      return [r.begin, r.target, ...(r.anchor ? [r.anchor] : []), ...r.mask.polygons.flat()];
    }
    case "mask-polygon":
      return doc.mask.polygons[ref.polygon];
    default:
      return [];
  }
}

/**
 * Translate a whole object by (dx, dy): a drag ("arrow"), a region ("region-arrow" / "region",
 * polygon + arrow + anchor) or a mask polygon. The shift is clamped so every point stays inside
 * the image ([0, W-1] x [0, H-1]).
 */
export function translateRef(doc, ref, dx, dy) {
  const pts = pointsOfRef(doc, ref);
  if (pts.length === 0) return doc;
  const [W, H] = doc.image_size;
  const xs = pts.map((q) => q[0]);
  const ys = pts.map((q) => q[1]);
  // Largest shift that keeps the bounding box of the object inside the image.
  const cdx = Math.min(Math.max(dx, -Math.min(...xs)), W - 1 - Math.max(...xs));
  const cdy = Math.min(Math.max(dy, -Math.min(...ys)), H - 1 - Math.max(...ys));
  const shift = (q) => [q[0] + cdx, q[1] + cdy];
  switch (ref.kind) {
    case "arrow": {
      const drags = doc.drags.map((d, i) =>
        i === ref.index ? { ...d, handle: shift(d.handle), target: shift(d.target) } : d,
      );
      return { ...doc, drags };
    }
    case "region-arrow":
    case "region": {
      const r = doc.regions[ref.index];
      return updateRegion(doc, ref.index, {
        begin: shift(r.begin),
        target: shift(r.target),
        anchor: r.anchor ? shift(r.anchor) : null,
        mask: { polygons: r.mask.polygons.map((poly) => poly.map(shift)) },
      });
    }
    case "mask-polygon": {
      const polygons = doc.mask.polygons.map((poly, k) => (k === ref.polygon ? poly.map(shift) : poly));
      return { ...doc, mask: { polygons } };
    }
    default:
      return doc;
  }
}

/**
 * Delete what a hit-test reference names: a drag (handle/target/arrow), a region
 * (begin/target/arrow/interior), a region's anchor (set to null), a polygon vertex (a polygon
 * left with < 3 vertices disappears, and so does a region without polygons) or a mask polygon.
 */
export function deleteRef(doc, ref) {
  switch (ref.kind) {
    case "handle":
    case "target":
    case "arrow":
      return deleteDrag(doc, ref.index);
    case "region-begin":
    case "region-target":
    case "region-arrow":
    case "region":
      return deleteRegion(doc, ref.index);
    case "region-anchor":
      return updateRegion(doc, ref.index, { anchor: null });
    case "region-vertex": {
      const polygons = removeVertex(doc.regions[ref.index].mask.polygons, ref.polygon, ref.vertex);
      return polygons.length ? updateRegion(doc, ref.index, { mask: { polygons } }) : deleteRegion(doc, ref.index);
    }
    case "mask-vertex": {
      const polygons = removeVertex(doc.mask.polygons, ref.polygon, ref.vertex);
      return { ...doc, mask: polygons.length ? { polygons } : null };
    }
    case "mask-polygon":
      return deleteMaskPolygon(doc, ref.polygon);
    default:
      return doc;
  }
}

// ---------------------------------------------------------------------------------------------
// Hit testing
// ---------------------------------------------------------------------------------------------

/**
 * Nearest editable point within `radius` (image pixels) of p, else the nearest arrow
 * (drag or region) within `radius`, else null.
 *
 * Returns {kind, index?, polygon?, vertex?, distance}. Candidates are visited in drawing order,
 * bottom to top (mask vertices; per region: vertices, anchor, begin, target; per drag: handle,
 * target) and a tie goes to the later one: drags beat regions, a target beats the handle under
 * it, a later drag beats an earlier one (it is drawn on top).
 * `layers` limits the search to some of "drags", "regions", "mask".
 */
export function hitTest(doc, p, radius, { layers = ["drags", "regions", "mask"] } = {}) {
  const use = new Set(layers);
  let best = null;
  const consider = (q, ref) => {
    if (!q) return;
    const d = distance(p, q);
    if (d <= radius && (best === null || d <= best.distance)) best = { ...ref, distance: d };
  };

  if (use.has("mask") && doc.mask) {
    doc.mask.polygons.forEach((poly, k) => poly.forEach((q, v) => consider(q, { kind: "mask-vertex", polygon: k, vertex: v })));
  }
  if (use.has("regions")) {
    doc.regions.forEach((r, i) => {
      r.mask.polygons.forEach((poly, k) => poly.forEach((q, v) => consider(q, { kind: "region-vertex", index: i, polygon: k, vertex: v })));
      consider(r.anchor, { kind: "region-anchor", index: i });
      consider(r.begin, { kind: "region-begin", index: i });
      consider(r.target, { kind: "region-target", index: i });
    });
  }
  if (use.has("drags")) {
    doc.drags.forEach((d, i) => {
      consider(d.handle, { kind: "handle", index: i });
      consider(d.target, { kind: "target", index: i });
    });
  }
  if (best) return best;

  // No point close enough: try the arrows' shafts.
  const considerSegment = (a, b, ref) => {
    const d = distanceToSegment(p, a, b);
    if (d <= radius && (best === null || d <= best.distance)) best = { ...ref, distance: d };
  };
  if (use.has("regions")) doc.regions.forEach((r, i) => considerSegment(r.begin, r.target, { kind: "region-arrow", index: i }));
  if (use.has("drags")) doc.drags.forEach((d, i) => considerSegment(d.handle, d.target, { kind: "arrow", index: i }));
  return best;
}

/**
 * The topmost polygon containing p in one layer: "regions" -> {kind: "region", index},
 * "mask" -> {kind: "mask-polygon", polygon}; null when p is in none.
 */
export function findPolygonAt(doc, p, layer) {
  if (layer === "regions") {
    for (let i = doc.regions.length - 1; i >= 0; i--) {
      if (doc.regions[i].mask.polygons.some((poly) => pointInPolygon(p, poly))) return { kind: "region", index: i };
    }
  } else if (layer === "mask" && doc.mask) {
    for (let k = doc.mask.polygons.length - 1; k >= 0; k--) {
      if (pointInPolygon(p, doc.mask.polygons[k])) return { kind: "mask-polygon", polygon: k };
    }
  }
  return null;
}

/**
 * What a click does while a polygon is being drawn (vertices `pending`):
 *   "close"  - click on the first vertex (>= 3 vertices), or the second click of a double-click
 *              (close to the last vertex, within `doubleClickMs`) when >= 3 vertices exist;
 *   "ignore" - such a double-click second click with fewer than 3 vertices (no duplicate vertex);
 *   "add"    - anything else: append a vertex.
 * `radius` is in the same units as the points; times in milliseconds.
 */
export function polygonClickAction(pending, p, { radius, now, lastClickTime = -Infinity, doubleClickMs = 400 }) {
  if (pending.length >= 3 && distance(p, pending[0]) <= radius) return "close";
  if (pending.length >= 1 && distance(p, pending[pending.length - 1]) <= radius && now - lastClickTime <= doubleClickMs) {
    return pending.length >= 3 ? "close" : "ignore";
  }
  return "add";
}

// ---------------------------------------------------------------------------------------------
// Undo / redo history of immutable states
// ---------------------------------------------------------------------------------------------

/** A history holding `present`, with up to `limit` undo steps. */
export function createHistory(present, { limit = 100 } = {}) {
  return { past: [], present, future: [], limit };
}

/** Record a new present state (drops the redo branch). Pushing the same object is a no-op. */
export function pushState(history, state) {
  if (state === history.present) return history;
  const past = [...history.past, history.present];
  return { ...history, past: past.slice(Math.max(0, past.length - history.limit)), present: state, future: [] };
}

export const canUndo = (history) => history.past.length > 0;
export const canRedo = (history) => history.future.length > 0;

/** Step back one state (no-op when there is nothing to undo). */
export function undo(history) {
  if (!canUndo(history)) return history;
  const past = history.past.slice(0, -1);
  return { ...history, past, present: history.past[history.past.length - 1], future: [history.present, ...history.future] };
}

/** Step forward one state (no-op when there is nothing to redo). */
export function redo(history) {
  if (!canRedo(history)) return history;
  const [present, ...future] = history.future;
  return { ...history, past: [...history.past, history.present], present, future };
}

/** Apply fn to every state of the history (e.g. rescale all of them after an image change). */
export function mapHistory(history, fn) {
  return { ...history, past: history.past.map(fn), present: fn(history.present), future: history.future.map(fn) };
}

// ---------------------------------------------------------------------------------------------
// JSON: parse (structure), validate (values), serialise
// ---------------------------------------------------------------------------------------------

/** "drag #1 (index 0)": the number drawn on the canvas and the list index the Python side names. */
export const dragLabel = (i) => `drag #${i + 1} (index ${i})`;
export const regionLabel = (i) => `region #${i + 1} (index ${i})`;
const maskLabel = (k) => `mask polygon #${k + 1} (index ${k})`;

const fmtPoint = (p) => `[${p.map((v) => String(v)).join(", ")}]`;

/**
 * Replace the non-standard tokens NaN, Infinity and -Infinity (which Python's json module
 * writes) by null outside of strings, so JSON.parse accepts the text; null coordinates are
 * later reported as non-finite by validateDocument.
 */
export function replaceNonFiniteTokens(text) {
  let out = "";
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      out += c;
      if (c === "\\") out += text[++i] ?? "";
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') {
      inString = true;
      out += c;
      continue;
    }
    const rest = text.slice(i, i + 9);
    const token = ["-Infinity", "Infinity", "NaN"].find((t) => rest.startsWith(t));
    if (token) {
      out += "null";
      i += token.length - 1;
      continue;
    }
    out += c;
  }
  return out;
}

/** [x, y] with numeric or null (-> NaN) entries; anything else is a structural error. */
function readPoint(value, what) {
  if (!Array.isArray(value) || value.length !== 2) {
    throw new DragDocumentError(`${what} must be a list [x, y], got ${JSON.stringify(value)}`);
  }
  return value.map((v) => {
    if (v === null) return NaN;
    if (typeof v !== "number") throw new DragDocumentError(`${what} must hold numbers, got ${JSON.stringify(value)}`);
    return v;
  });
}

function readPolygons(value, what) {
  if (!value || typeof value !== "object" || !Array.isArray(value.polygons)) {
    throw new DragDocumentError(`${what} must be {"polygons": [[[x, y], ...], ...]}`);
  }
  return value.polygons.map((poly, k) => {
    if (!Array.isArray(poly)) throw new DragDocumentError(`${what}: polygon ${k} must be a list of [x, y] points`);
    return poly.map((q, v) => readPoint(q, `${what}: polygon ${k} vertex ${v}`));
  });
}

/**
 * Check the structure of a parsed object and return a normalised document (defaults filled
 * in: mode "drag", scale [1, 1], mask null, regions [], anchor null). Throws DragDocumentError.
 * Values (inside the image, handle != target, finite, known mode/op) are checked by
 * validateDocument, so a document with bad values can still be loaded and fixed in the editor.
 */
export function normalizeDocument(obj) {
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) {
    throw new DragDocumentError("drags JSON must be an object");
  }
  if (obj.version !== SCHEMA_VERSION) {
    throw new DragDocumentError(`unsupported drags JSON version ${JSON.stringify(obj.version)} (expected ${SCHEMA_VERSION})`);
  }
  const size = obj.image_size;
  if (!Array.isArray(size) || size.length !== 2 || !size.every((v) => Number.isInteger(v) && v > 0)) {
    throw new DragDocumentError(`image_size must be [width, height] positive integers, got ${JSON.stringify(size)}`);
  }
  const rawDrags = obj.drags ?? [];
  if (!Array.isArray(rawDrags)) throw new DragDocumentError("drags must be a list");
  const drags = rawDrags.map((d, i) => {
    if (!d || typeof d !== "object") throw new DragDocumentError(`${dragLabel(i)} must be an object`);
    let scale = d.scale ?? [1, 1];
    if (typeof scale === "number") scale = [scale, scale];
    const handle = readPoint(d.handle, `${dragLabel(i)}: handle`);
    return {
      handle,
      // an anchor's target may be left out: it is its handle
      target: d.mode === "anchor" && d.target == null ? copyPoint(handle) : readPoint(d.target, `${dragLabel(i)}: target`),
      mode: d.mode ?? "drag",
      scale: readPoint(scale, `${dragLabel(i)}: scale`),
      ...(d.angle == null || Number(d.angle) === 0 ? {} : { angle: Number(d.angle) }),
      // kept as given (an unknown value is reported by validateDocument, so it can be fixed)
      ...(d.depth == null || d.depth === "auto" ? {} : { depth: d.depth }),
    };
  });
  const mask = obj.mask == null ? null : { polygons: readPolygons(obj.mask, "mask") };
  const rawRegions = obj.regions ?? [];
  if (!Array.isArray(rawRegions)) throw new DragDocumentError("regions must be a list");
  const regions = rawRegions.map((r, i) => {
    if (!r || typeof r !== "object") throw new DragDocumentError(`${regionLabel(i)} must be an object`);
    return {
      op: r.op ?? "relocate",
      mask: { polygons: readPolygons(r.mask, `${regionLabel(i)}: mask`) },
      begin: readPoint(r.begin, `${regionLabel(i)}: begin`),
      target: readPoint(r.target, `${regionLabel(i)}: target`),
      anchor: r.anchor == null ? null : readPoint(r.anchor, `${regionLabel(i)}: anchor`),
      ...(r.depth == null || r.depth === "auto" ? {} : { depth: r.depth }),
    };
  });
  return { version: SCHEMA_VERSION, image_size: [size[0], size[1]], drags, mask, regions };
}

/**
 * Parse the `drags` widget text. Returns null for a blank value (empty text, "{}", or a
 * placeholder without content and without a usable image_size); otherwise a normalised
 * document. Throws DragDocumentError on malformed JSON or structure.
 */
export function parseDocument(text) {
  if (text == null || String(text).trim() === "") return null;
  let obj;
  try {
    obj = JSON.parse(replaceNonFiniteTokens(String(text)));
  } catch (err) {
    throw new DragDocumentError(`drags value is not valid JSON: ${err.message}`);
  }
  if (obj && typeof obj === "object" && !Array.isArray(obj)) {
    const empty =
      (obj.drags ?? []).length === 0 && (obj.regions ?? []).length === 0 && (obj.mask == null || (obj.mask.polygons ?? []).length === 0);
    const size = obj.image_size;
    const sizeUsable = Array.isArray(size) && size.length === 2 && size.every((v) => Number.isInteger(v) && v > 0);
    if (empty && !sizeUsable) return null;
  }
  return normalizeDocument(obj);
}

/** Canonical JSON text of a document (fixed key order; the editor writes this into `drags`). */
export function serializeDocument(doc) {
  const point = (p) => [p[0], p[1]];
  const polygons = (m) => ({ polygons: m.polygons.map((poly) => poly.map(point)) });
  return JSON.stringify({
    version: SCHEMA_VERSION,
    image_size: point(doc.image_size),
    drags: doc.drags.map((d) => ({
      handle: point(d.handle),
      target: point(d.target),
      mode: d.mode,
      scale: point(d.scale),
      ...(d.angle ? { angle: d.angle } : {}),
      ...(d.depth && d.depth !== "auto" ? { depth: d.depth } : {}),
    })),
    mask: doc.mask ? polygons(doc.mask) : null,
    regions: doc.regions.map((r) => ({
      op: r.op,
      mask: polygons(r.mask),
      begin: point(r.begin),
      target: point(r.target),
      anchor: r.anchor ? point(r.anchor) : null,
      ...(r.depth && r.depth !== "auto" ? { depth: r.depth } : {}),
    })),
  });
}

/**
 * Value checks, mirroring the Python node's rules. Returns a list of messages (empty = valid);
 * each names the drag / region / polygon and says how to fix it:
 *   - a coordinate that is NaN / infinite / null,
 *   - a point outside the image (0 <= x < W, 0 <= y < H),
 *   - an anchor whose target is not its handle; only anchors (nothing would move);
 *   - region begin == target,
 *   - unknown mode / op / depth, a depth on an anchor, non-positive scale, polygons with fewer than 3 vertices,
 *   - with `requireDrags`: an empty drag list.
 */
export function validateDocument(doc, { requireDrags = false } = {}) {
  const errors = [];
  const [W, H] = doc.image_size;
  const sizeText = `${W}x${H}`;

  // One point: finite, then inside. Returns true when the point is usable.
  const checkPoint = (label, name, p) => {
    if (!Number.isFinite(p[0]) || !Number.isFinite(p[1])) {
      errors.push(`${label}: ${name} has a non-finite coordinate ${fmtPoint(p)}; redraw it on the image`);
      return false;
    }
    if (!isInsideImage(p, doc.image_size)) {
      errors.push(
        `${label}: ${name} ${fmtPoint(p)} is outside the ${sizeText} image (need 0 <= x < ${W}, 0 <= y < ${H}); move it inside the image`,
      );
      return false;
    }
    return true;
  };
  const checkPolygons = (label, polygons) => {
    if (polygons.length === 0) errors.push(`${label}: has no polygon; draw its outline`);
    polygons.forEach((poly, k) => {
      if (poly.length < 3) errors.push(`${label}: polygon ${k} has ${poly.length} vertices, needs at least 3`);
      poly.forEach((q, v) => checkPoint(label, `polygon ${k} vertex ${v}`, q));
    });
  };

  if (requireDrags && doc.drags.length === 0) {
    errors.push("no drags: draw at least one handle -> target arrow on the image");
  }
  doc.drags.forEach((d, i) => {
    const label = dragLabel(i);
    const okH = checkPoint(label, "handle", d.handle);
    const okT = checkPoint(label, "target", d.target);
    const angle = d.angle ?? 0;
    if (!Number.isFinite(angle)) errors.push(`${label}: angle ${angle} must be a number of degrees`);
    else if (angle !== 0 && d.mode !== "move") errors.push(`${label}: an angle needs mode "move" (an elastic drag cannot rotate)`);
    if (okH && okT && d.mode === "anchor" && (d.handle[0] !== d.target[0] || d.handle[1] !== d.target[1])) {
      errors.push(`${label}: an anchor holds its handle ${fmtPoint(d.handle)} in place, but its target is ${fmtPoint(d.target)}; use mode "drag" to move it`);
    }
    const depth = d.depth ?? "auto";
    if (!DRAG_DEPTHS.includes(depth)) errors.push(`${label}: unknown depth ${JSON.stringify(depth)}; use ${DRAG_DEPTHS.join(", ")}`);
    else if (depth !== "auto" && d.mode === "anchor") errors.push(`${label}: an anchor does not move, so depth ${JSON.stringify(depth)} has nothing to place; remove it`);
    if (!DRAG_MODES.includes(d.mode)) errors.push(`${label}: unknown mode ${JSON.stringify(d.mode)}; use "drag", "move" or "anchor"`);
    if (!d.scale.every((s) => Number.isFinite(s) && s > 0)) {
      errors.push(`${label}: scale ${fmtPoint(d.scale)} must be two positive numbers`);
    }
  });
  if (doc.drags.length && !doc.regions.length && doc.drags.every(isAnchor)) {
    errors.push(`only anchors (${doc.drags.length} fixed point${doc.drags.length === 1 ? "" : "s"}): nothing would move; drag at least one handle to a new target`);
  }
  if (doc.mask) doc.mask.polygons.forEach((poly, k) => checkPolygons(maskLabel(k), [poly]));
  doc.regions.forEach((r, i) => {
    const label = regionLabel(i);
    if (!REGION_OPS.includes(r.op)) errors.push(`${label}: unknown op ${JSON.stringify(r.op)}; use ${REGION_OPS.join(", ")}`);
    if (!DRAG_DEPTHS.includes(r.depth ?? "auto")) errors.push(`${label}: unknown depth ${JSON.stringify(r.depth)}; use ${DRAG_DEPTHS.join(", ")}`);
    checkPolygons(label, r.mask.polygons);
    const okB = checkPoint(label, "begin", r.begin);
    const okT = checkPoint(label, "target", r.target);
    if (okB && okT && r.begin[0] === r.target[0] && r.begin[1] === r.target[1]) {
      errors.push(`${label}: begin equals target ${fmtPoint(r.begin)}; drag the region's arrow head to where it should go`);
    }
    if (r.anchor) checkPoint(label, "anchor", r.anchor);
  });
  return errors;
}

// ---------------------------------------------------------------------------------------------
// Rescale when the image size changes
// ---------------------------------------------------------------------------------------------

/**
 * Map a document drawn on an image of doc.image_size onto an image of newSize = [W', H']:
 * x' = x * W'/W, y' = y * H'/H (rounded to 0.01 px, clamped into the new image).
 * Returns {doc, warning}: warning is null when the size is unchanged or the document is empty,
 * otherwise a sentence saying what was rescaled, whether the aspect ratio changed (shapes are
 * then stretched) and which drags collapsed to handle == target.
 */
export function rescaleDocument(doc, newSize) {
  const [W, H] = doc.image_size;
  const [nW, nH] = newSize;
  if (W === nW && H === nH) return { doc, warning: null };
  const resized = { ...doc, image_size: [nW, nH] };
  if (isEmptyDocument(doc)) return { doc: { ...resized, mask: null }, warning: null };

  const sx = nW / W;
  const sy = nH / H;
  const round2 = (v) => Math.round(v * 100) / 100;
  const map = (p) => [
    Math.min(Math.max(round2(p[0] * sx), 0), nW - 1),
    Math.min(Math.max(round2(p[1] * sy), 0), nH - 1),
  ];
  const mapPolys = (m) => ({ polygons: m.polygons.map((poly) => poly.map(map)) });
  const out = {
    ...resized,
    drags: doc.drags.map((d) => ({ ...d, handle: map(d.handle), target: map(d.target) })),
    mask: doc.mask ? mapPolys(doc.mask) : null,
    regions: doc.regions.map((r) => ({
      ...r,
      mask: mapPolys(r.mask),
      begin: map(r.begin),
      target: map(r.target),
      anchor: r.anchor ? map(r.anchor) : null,
    })),
  };

  const parts = [];
  if (doc.drags.length) parts.push(`${doc.drags.length} drag${doc.drags.length === 1 ? "" : "s"}`);
  if (doc.regions.length) parts.push(`${doc.regions.length} region${doc.regions.length === 1 ? "" : "s"}`);
  if (doc.mask) parts.push("the mask");
  const fmt = (v) => String(Math.round(v * 1000) / 1000);
  let warning = `image size changed from ${W}x${H} to ${nW}x${nH}: ${parts.join(", ")} rescaled (x *${fmt(sx)}, y *${fmt(sy)})`;
  if (Math.abs(sx - sy) > 1e-9 * Math.max(sx, sy)) warning += "; the aspect ratio changed, so shapes are stretched - check the drags";
  const collapsed = out.drags
    .map((d, i) => (!isAnchor(doc.drags[i]) && isAnchor(d) ? dragLabel(i) : null))
    .filter(Boolean);
  if (collapsed.length) warning += `; ${collapsed.join(", ")} now ha${collapsed.length === 1 ? "s" : "ve"} handle == target (an anchor: nothing moves there)`;
  return { doc: out, warning };
}

// ---------------------------------------------------------------------------------------------
// ComfyUI image references (pure string handling, used to find the upstream image)
// ---------------------------------------------------------------------------------------------

/**
 * Parse a LoadImage-style widget value "sub/dir/name.png [input]" into
 * {filename, subfolder, type}; the type defaults to "input". Returns null for empty values.
 */
export function parseImageWidgetValue(value) {
  if (typeof value !== "string" || value.trim() === "") return null;
  let rest = value.trim();
  let type = "input";
  const m = rest.match(/^(.*) \[(input|output|temp)\]$/);
  if (m) {
    rest = m[1];
    type = m[2];
  }
  const slash = rest.lastIndexOf("/");
  return { filename: slash >= 0 ? rest.slice(slash + 1) : rest, subfolder: slash >= 0 ? rest.slice(0, slash) : "", type };
}

/** Query string for ComfyUI's /view endpoint from an image reference {filename, subfolder, type}. */
export function viewQuery(ref) {
  const params = new URLSearchParams({ filename: ref.filename, type: ref.type || "input", subfolder: ref.subfolder || "" });
  return `/view?${params.toString()}`;
}
