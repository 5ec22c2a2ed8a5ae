"""Tier 2, real server: bad inputs over ``POST /prompt`` on the toy model.

Each class of bad input is refused with a message that names the input (and the limit or the fix),
reported as ``fluxdrag.<Error>`` — never under the install path — while the server stays up, and
the next good edit is bit-identical to the first one (nothing left patched or cached). Interrupts
in the middle of the inversion and of the sampling leave nothing behind either.
"""
from __future__ import annotations

import json
import threading
import time

import pytest
import torch

from tools import toy_graphs
from tools.toy_graphs import node

pytest_plugins = ["comfy_server"]
pytestmark = pytest.mark.tier2

SEED = 11          # toy scene of this test
STEPS = 4


def edit_graph(steps: int = STEPS, instructions=("2", 1), latent=("2", 0), model=("1", 0),
                extra: dict | None = None, prefix: str = "bad_inputs") -> dict:
    """The toy LazyDrag edit (``tools/toy_graphs.lazydrag``) with inputs rewired."""
    g = toy_graphs.lazydrag(SEED, steps=steps, prefix=prefix)
    g["3"]["inputs"].update(drag_instructions=list(instructions), latent=list(latent))
    g["4"]["inputs"].update(model=list(model), latent=list(latent))
    g["5"]["inputs"].update(model=list(model))
    g.update(extra or {})
    return g


def json_graph(text: str) -> dict:
    """The edit with the instructions coming from the JSON node."""
    return edit_graph(instructions=("20", 0), extra={"20": node("FluxDragInstructionsJSON", drags_json=text)})


def _full(client, graph: dict) -> dict:
    return toy_graphs.with_defaults(graph, client.object_info())


def _latent_bytes(client, entry) -> bytes:
    files = client.output_files(entry, kind="latents")
    assert len(files) == 1, entry["outputs"]
    from safetensors.torch import load_file

    return load_file(str(files[0]))["latent_tensor"].numpy().tobytes()


@pytest.fixture(scope="module")
def reference(comfy_server):
    """The good edit's exact latent, run first."""
    entry = comfy_server.run(_full(comfy_server, edit_graph()), timeout=300)
    return _latent_bytes(comfy_server, entry)


def _wait_entry(client, prompt_id: str, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = client.get_json(f"/history/{prompt_id}").get(prompt_id)
        if entry is not None and entry.get("status", {}).get("completed") is not None:
            if entry["status"].get("status_str") in ("success", "error"):
                return entry
        assert client.proc.poll() is None, "the server went down"
        time.sleep(0.05)
    raise AssertionError(f"prompt {prompt_id} did not finish")


def _error(client, graph: dict) -> dict:
    """Run a graph that must fail during execution; the execution_error message's data."""
    status, answer = client.post_prompt(_full(client, graph))
    assert status == 200 and "prompt_id" in answer, answer
    entry = _wait_entry(client, answer["prompt_id"])
    errors = [d for kind, d in entry["status"]["messages"] if kind == "execution_error"]
    assert errors, f"expected an execution error, got {entry['status']}"
    return errors[0]


def _assert_good_run_unchanged(client, reference: bytes) -> None:
    assert client.proc.poll() is None, "the server went down"
    entry = client.run(_full(client, edit_graph()), timeout=300)
    assert _latent_bytes(client, entry) == reference, "the next good edit differs from the first"


DOC = {"version": 1, "image_size": [256, 256], "drags": [{"handle": [100, 120], "target": [140, 120]}]}


def _doc(**kw) -> str:
    return json.dumps(dict(DOC, **kw))


BAD_JSON = {
    "empty": ("", "is empty"),
    "not_json": ("{drags: [}", "is not valid JSON"),
    "wrong_type": ('[1, 2, 3]', "must be a JSON object"),
    "nan": ('{"version": 1, "image_size": [256, 256], "drags": [{"handle": [NaN, 1], "target": [3, 4]}]}',
            "NaN or infinity"),
    "out_of_image": (_doc(drags=[{"handle": [100, 120], "target": [900, 120]}]), "lies outside the 256x256 image"),
    "bad_rle": (_doc(mask={"rle": {"size": [256, 256], "counts": [5, 7]}}), "counts sum to 12"),
    "huge_side": (_doc(image_size=[1e30, 256]), "over the limit of 4096 px per side"),
    "too_many_drags": (_doc(drags=[{"handle": [10, 10], "target": [20, 20]}] * 10000), "over the limit of 64"),
    "deep": ('{"version": 1, "x": ' + "[" * 5000 + "]" * 5000 + "}", "nested deeper than 32"),
}


@pytest.mark.parametrize("case", list(BAD_JSON))
def test_bad_instructions_named_and_nothing_left(comfy_server, reference, case):
    text, expected = BAD_JSON[case]
    err = _error(comfy_server, json_graph(text))
    assert err["node_type"] == "FluxDragInstructionsJSON"
    assert "input 'drags_json'" in err["exception_message"] and expected in err["exception_message"], err
    assert err["exception_type"] == "fluxdrag.FluxDragInputError", err["exception_type"]
    _assert_good_run_unchanged(comfy_server, reference)


def test_points_text_with_bad_number(comfy_server, reference):
    g = edit_graph(instructions=("20", 0), extra={
        "20": node("FluxDragInstructionsFromPoints", image=["2", 3], points="56..3,10 -> 80,10", mode="drag")})
    err = _error(comfy_server, g)
    assert "input 'points' line 1" in err["exception_message"], err
    assert "/" not in err["exception_type"]
    _assert_good_run_unchanged(comfy_server, reference)


def test_latent_not_multiple_of_16(comfy_server, reference):
    g = edit_graph(latent=("20", 0), extra={"20": node("EmptyLatentImage", width=200, height=256, batch_size=1)})
    err = _error(comfy_server, g)
    assert "input 'latent'" in err["exception_message"] and "multiple of 16" in err["exception_message"], err
    _assert_good_run_unchanged(comfy_server, reference)


def test_wrong_model_family(comfy_server, reference):
    g = edit_graph(model=("20", 0), extra={"20": node("FluxDragTestTinySD15Checkpoint", ckpt_name="sd15.safetensors")})
    err = _error(comfy_server, g)
    assert "input 'model'" in err["exception_message"] and "FLUX" in err["exception_message"], err
    assert err["exception_type"] == "fluxdrag.FluxDragInputError"
    _assert_good_run_unchanged(comfy_server, reference)


@pytest.mark.parametrize("phase,node_type", [("inversion", "FluxDragInvert"),
                                             ("sampling", "FluxDragSampleFromInversion")])
def test_interrupt_leaves_nothing(comfy_server, reference, phase, node_type):
    """Interrupt while ``node_type`` runs (found from the websocket's ``executing`` event); the
    next good edit is bit-identical."""
    from tools.comfy_client import ComfyClient
    from tools.comfy_server import ServerError

    nid = "4" if phase == "inversion" else "6"
    other = ComfyClient(comfy_server.base_url)    # interrupts from its own thread and loop
    timers = []

    def on_event(kind, data):
        if kind == "executing" and data.get("node") == nid and not timers:
            timers.append(threading.Timer(0.05, other.request, ("POST", "/interrupt", b"{}")))
            timers[0].start()

    try:
        assert comfy_server.open_progress(), comfy_server.ws_failed
        pid = comfy_server.queue(_full(comfy_server, edit_graph(steps=40, prefix="interrupted")))
        with pytest.raises(ServerError):
            comfy_server.wait(pid, timeout=300, on_event=on_event)
    finally:
        for t in timers:
            t.join(10)
        other.close()
    assert timers, f"node {nid} never started"
    entry = _wait_entry(comfy_server, pid)
    kinds = dict(entry["status"]["messages"])
    assert "execution_interrupted" in kinds, entry["status"]
    assert kinds["execution_interrupted"]["node_type"] == node_type, kinds["execution_interrupted"]
    _assert_good_run_unchanged(comfy_server, reference)


def test_good_runs_are_deterministic(reference):
    assert isinstance(reference, bytes) and len(reference) == 16 * 32 * 32 * 4
    assert torch.frombuffer(bytearray(reference), dtype=torch.float32).isfinite().all()


# ---------------------------------------------------------------- what is changed is reported

def _texts(client, graph) -> list[tuple[str, str]]:
    """Run a good graph; the (node, text) progress texts it sent over the websocket."""
    texts = []

    def on_event(kind, data):
        if kind == "progress_text":
            texts.append((data["node"], data["text"]))

    assert client.open_progress(), client.ws_failed
    client.run(_full(client, graph), timeout=300, on_event=on_event)
    return texts


def test_resized_mask_is_reported(comfy_server):
    g = edit_graph(prefix="warn_mask", extra={"30": node("SolidMask", value=1.0, width=128, height=128)})
    g["3"]["inputs"]["mask"] = ["30", 0]
    texts = _texts(comfy_server, g)
    assert any(n == "3" and "input 'mask' is 128×128 but the image is 256×256" in t for n, t in texts), texts
    assert "WARNING" in comfy_server.log() or "input 'mask' is 128×128" in comfy_server.log()


def test_rescaled_drawing_is_reported(comfy_server):
    doc = dict(DOC, image_size=[512, 512], drags=[{"handle": [200, 240], "target": [280, 240]}])
    texts = _texts(comfy_server, json_graph(json.dumps(doc)))
    assert any(n == "3" and "drawn on a 512x512 image" in t and "rescaling" in t for n, t in texts), texts


def test_mixed_solvers_are_reported(comfy_server):
    g = edit_graph(prefix="warn_solver")
    g["6"]["inputs"]["solver"] = "fireflow"     # the inversion is uni_inv (auto would be euler)
    texts = _texts(comfy_server, g)
    assert any(n == "6" and "input 'solver' is fireflow" in t for n, t in texts), texts


# ---------------------------------------------------------------- checks before any model runs

def test_cfg_without_negative_refused_when_queued(comfy_server):
    g = edit_graph()
    g["6"]["inputs"]["cfg"] = 3.0
    status, answer = comfy_server.post_prompt(_full(comfy_server, g))
    assert status == 400, answer
    details = json.dumps(answer.get("node_errors", {}).get("6", {}))
    assert "needs input 'negative'" in details, answer


def test_patch_map_mismatch_refused_before_inversion(comfy_server, reference):
    g = edit_graph(extra={"30": node("FluxDragCorrespondenceMap", drag_instructions=["2", 1], latent=["2", 0],
                                     transition_width=2, activation=0.8, seed=0, background_query="live")})
    g["5"]["inputs"]["map"] = ["30", 0]
    # an Invert input that does not change the edit, so that ComfyUI runs the Invert instead of
    # serving the reference run's cached output (which it may: node outputs are never changed
    # downstream); a cached Invert wastes no work, and the Patch refuses the map itself
    g["4"]["inputs"]["cache_budget_gb"] = 64.0
    t0 = time.monotonic()
    err = _error(comfy_server, g)
    assert err["node_type"] == "FluxDragInvert", err
    assert "checked before inverting" in err["exception_message"] and "node 30" in err["exception_message"], err
    assert time.monotonic() - t0 < 60
    _assert_good_run_unchanged(comfy_server, reference)


def test_dragflow_batch_of_two_refused(comfy_server, reference):
    g = toy_graphs.dragflow(SEED, steps=4, iterations=(1, 0), prefix="batch2")
    g["9"] = node("RepeatLatentBatch", samples=["2", 0], amount=2)
    g["4"]["inputs"]["latent"] = ["9", 0]
    err = _error(comfy_server, g)
    assert "input 'latent' has a batch of 2" in err["exception_message"], err
    _assert_good_run_unchanged(comfy_server, reference)


def test_rescaled_dragflow_regions_are_reported(comfy_server):
    doc = json.loads(toy_graphs.region_doc(SEED))
    # the same drawing announced at twice the size: every point and the mask doubled
    from fluxdrag.core.instructions import parse_instructions, rescale, rle_encode

    ins = rescale(parse_instructions(doc), (512, 512))
    r = ins.regions[0]
    doc2 = dict(doc, image_size=[512, 512], mask={"rle": rle_encode(ins.mask)},
                drags=[{"handle": list(d.handle), "target": list(d.target), "mode": d.mode} for d in ins.drags],
                regions=[{"op": r.op, "mask": {"rle": rle_encode(r.mask)}, "begin": list(r.begin),
                          "target": list(r.target)}])
    g = toy_graphs.dragflow(SEED, steps=4, iterations=(1, 0), prefix="warn_regions")
    g["3"]["inputs"]["drags_json"] = json.dumps(doc2)
    texts = _texts(comfy_server, g)
    assert any(n == "4" and "regions rescaled" in t for n, t in texts), texts


def test_contextdrag_on_a_model_without_reference(comfy_server, reference):
    """ContextDrag needs FLUX Kontext's reference tokens: on the toy model (no ReferenceLatent) the
    patch refuses with the fix, the server stays up, the next edit is unchanged."""
    g = {
        "1": node("FluxDragToyModelLoader", family="any", guidance=3.5),
        "2": node("FluxDragToyScene", seed=SEED, family="single", case="move"),
        "3": node("FluxDragReverseMapping", drag_instructions=["2", 1], latent=["2", 0]),
        "4": node("FluxDragContextTokenInjection", model=["1", 0], map=["3", 0]),
        "5": node("KSampler", model=["4", 0], positive=["1", 1], negative=["1", 1], latent_image=["2", 0],
                  steps=2, cfg=1.0, denoise=1.0, seed=0),
        "6": node("SaveLatent", samples=["5", 0], filename_prefix="no_reference"),
    }
    err = _error(comfy_server, g)
    assert "ReferenceLatent" in err["exception_message"], err
    assert err["exception_type"] == "fluxdrag.ContextDragError", err["exception_type"]
    _assert_good_run_unchanged(comfy_server, reference)
