"""Tier 2, real server: the pack in a running ComfyUI, and the shipped workflows over HTTP.

One ``python main.py --cpu`` server per session (tests/comfy_server.py) with the pack and the
test-only loaders (tests/comfy_test_nodes) in a temporary custom_nodes folder. Shipped API
workflows run with only UNETLoader / DualCLIPLoader / VAELoader swapped for tiny stand-ins.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import workflow_tools as wt
from comfy_fixtures import comfy  # noqa: F401

pytest_plugins = ["comfy_server"]
pytestmark = pytest.mark.tier2

API_FILES = wt.api_workflows()
PACK_CATEGORY = "FluxDrag"


def _in_pack_category(info: dict) -> bool:
    cat = info.get("category", "")
    return cat == PACK_CATEGORY or cat.startswith(PACK_CATEGORY + "/")


def test_pack_and_test_nodes_import_cleanly(comfy_server):
    assert comfy_server.import_failures() == [], "a package in custom_nodes failed to import"
    for link in (comfy_server.pack_link, comfy_server.test_nodes_link):
        line = comfy_server.import_time_line(link)
        assert line is not None, f"ComfyUI did not try to load {link}"
        assert "IMPORT FAILED" not in line


def test_all_pack_nodes_listed(comfy_server, comfy):  # noqa: F811
    from fluxdrag.nodes import all_nodes

    schemas = [cls.define_schema() for cls in all_nodes()]
    ids = {s.node_id for s in schemas}
    assert len(ids) == len(schemas) >= 4
    info = comfy_server.object_info()
    assert ids <= set(info), f"missing from /object_info: {sorted(ids - set(info))}"
    for s in schemas:
        node = info[s.node_id]
        assert node["python_module"] == f"custom_nodes.{comfy_server.pack_link}"
        assert node["display_name"] == s.display_name
        assert _in_pack_category(node)
    # and nothing under the pack's category that the pack does not declare
    assert {k for k, v in info.items() if _in_pack_category(v)} == ids


def test_only_ui_workflows_are_offered_as_templates(comfy_server):
    """ComfyUI's template browser lists the pack's workflows/ folder (one level): the UI files,
    not their API twins (in workflows/api/, which the frontend could not open)."""
    listed = comfy_server.get_json("/workflow_templates").get(comfy_server.pack_link, [])
    ui_files = sorted(p.stem for p in wt.WORKFLOWS.glob("*.json"))
    assert len(ui_files) == len(API_FILES) and sorted(listed) == ui_files
    assert {wt.ui_twin(p).stem for p in API_FILES} == set(ui_files)
    base = f"/api/workflow_templates/{comfy_server.pack_link}"
    status, body = comfy_server.request("GET", f"{base}/lazydrag_flux.json")
    assert status == 200 and json.loads(body)["nodes"]
    status, body = comfy_server.request("GET", f"{base}/api/lazydrag_flux_api.json")
    assert status == 200 and "nodes" not in json.loads(body)  # still served, for POST /prompt users


def test_example_input_is_installed(comfy_server):
    """The pack put its example picture into the server's input folder at start, under the name
    every shipped workflow's LoadImage uses, so the templates open with their picture."""
    from fluxdrag.nodes.editor import EXAMPLE_INPUT_NAME

    installed = comfy_server.input_dir / EXAMPLE_INPUT_NAME
    assert installed.read_bytes() == (wt.EXAMPLE_INPUTS / "source.png").read_bytes()
    status, body = comfy_server.request("GET", f"/view?filename={EXAMPLE_INPUT_NAME}&type=input")
    assert status == 200 and body == installed.read_bytes()
    for api_path in API_FILES:
        for n in wt.load_api(api_path).values():
            if n["class_type"] == "LoadImage":
                assert n["inputs"]["image"] == EXAMPLE_INPUT_NAME, api_path.name


def test_example_input_never_overwrites(tmp_path, comfy):  # noqa: F811
    """A user's file of that name stays as it is; a missing one is written once."""
    from fluxdrag.nodes.editor import EXAMPLE_INPUT_NAME, EXAMPLE_SOURCE, install_example_input

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / EXAMPLE_INPUT_NAME).write_bytes(b"the user's own picture")
    assert install_example_input(mine) is None
    assert (mine / EXAMPLE_INPUT_NAME).read_bytes() == b"the user's own picture"
    fresh = tmp_path / "fresh" / "input"
    assert install_example_input(fresh) == fresh / EXAMPLE_INPUT_NAME
    assert (fresh / EXAMPLE_INPUT_NAME).read_bytes() == EXAMPLE_SOURCE.read_bytes()
    assert install_example_input(fresh) is None  # once
    # with no folder given it asks ComfyUI for its input folder
    import folder_paths

    before = folder_paths.get_input_directory()
    try:
        folder_paths.set_input_directory(str(mine))
        assert install_example_input() is None
        assert (mine / EXAMPLE_INPUT_NAME).read_bytes() == b"the user's own picture"
    finally:
        folder_paths.set_input_directory(before)


@pytest.mark.parametrize("api_path", API_FILES, ids=[p.name for p in API_FILES])
def test_workflow_node_types_known(comfy_server, api_path):
    api = wt.load_api(api_path)
    known = set(comfy_server.object_info())
    assert wt.node_types(api) <= known, sorted(wt.node_types(api) - known)
    assert wt.node_types(wt.swap_loaders(api)) <= known



def test_invert_reconstruct_runs_over_http(comfy_server):
    """The shipped graph as it is (its picture is the installed example input; no upload)."""
    api = wt.swap_loaders(wt.load_api(wt.API_WORKFLOWS / "invert_reconstruct_api.json"))
    entry = comfy_server.run(api)
    save_id, _ = wt.node_by_title(api, "Save reconstruction")
    assert entry["outputs"][save_id]["images"], entry["outputs"]
    [out] = comfy_server.output_files(entry)
    assert out.is_file()
    recon = wt.load_png(out)
    assert recon.shape == (256, 256, 3) and recon.std() > 1.0

    # a new target prompt re-samples from the server's cached inversion record (ComfyUI's
    # classic cache keeps only the previous prompt's nodes: run this right after it)
    prompt2 = wt.set_input(copy.deepcopy(api), "Target prompt", "text", "a red house under a tree")
    entry2 = comfy_server.run(prompt2)
    cached = [set(m[1]["nodes"]) for m in entry2["status"]["messages"]
              if m[0] == "execution_cached"]
    assert wt.node_by_title(api, "Invert")[0] in set().union(*cached)
    [out2] = comfy_server.output_files(entry2)
    assert out2 != out and np.abs(wt.load_png(out2) - recon).mean() > 1.0

    # reference: the same (test) VAE round trip without inversion; Invert → Sample From
    # Inversion must give the latent back, so the two pictures nearly agree
    ref = {k: copy.deepcopy(api[k]) for k in ("3", "4", "5")}
    ref["11"] = {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["3", 0]}}
    ref["12"] = {"class_type": "SaveImage",
                 "inputs": {"images": ["11", 0], "filename_prefix": "FluxDrag/vae_roundtrip"}}
    [ref_out] = comfy_server.output_files(comfy_server.run(ref))
    diff = np.abs(recon - wt.load_png(ref_out)).mean()
    # measured on this tiny model: FireFlow 8 steps 4.1/255 (16 steps 0.8), Euler 8 steps 28
    assert diff < 8.0, f"reconstruction differs from the VAE round trip by {diff:.2f}/255"


def test_pack_samplers_run_in_sampler_custom_advanced(comfy_server):
    def n(class_type, **inputs):
        return {"class_type": class_type, "inputs": inputs}

    prompt = {
        "1": n("FluxDragTestTinyUNET", unet_name="flux1-dev.safetensors", weight_dtype="default"),
        "2": n("FluxDragTestTinyCLIP", clip_name1="a", clip_name2="b", type="flux"),
        "3": n("FluxDragTestTinyVAE", vae_name="ae.safetensors"),
        "4": n("CLIPTextEncode", text="a house", clip=["2", 0]),
        "5": n("FluxGuidance", conditioning=["4", 0], guidance=3.5),
        "6": n("BasicGuider", model=["1", 0], conditioning=["5", 0]),
        "7": n("RandomNoise", noise_seed=1),
        "8": n("BasicScheduler", model=["1", 0], scheduler="simple", steps=4, denoise=1.0),
        "9": n("EmptySD3LatentImage", width=128, height=128, batch_size=1),
        "10": n("FluxDragFireFlowSampler"),
        "11": n("FluxDragUniInvSampler", zero_init=False),
    }
    for k, (sampler, save) in enumerate((("10", "s_fireflow"), ("11", "s_uni_inv"))):
        a, d, s = str(20 + 3 * k), str(21 + 3 * k), str(22 + 3 * k)
        prompt[a] = n("SamplerCustomAdvanced", noise=["7", 0], guider=["6", 0],
                      sampler=[sampler, 0], sigmas=["8", 0], latent_image=["9", 0])
        prompt[d] = n("VAEDecode", samples=[a, 0], vae=["3", 0])
        prompt[s] = n("SaveImage", images=[d, 0], filename_prefix=f"FluxDrag/{save}")
    files = comfy_server.output_files(comfy_server.run(prompt))
    assert len(files) == 2
    imgs = [wt.load_png(f) for f in files]
    assert all(i.shape == (128, 128, 3) and i.std() > 1.0 for i in imgs)
    assert np.abs(imgs[0] - imgs[1]).mean() > 0.1  # two solvers, two results


def test_broken_input_rejected_with_node_errors(comfy_server):
    api = wt.swap_loaders(wt.load_api(wt.API_WORKFLOWS / "invert_reconstruct_api.json"))
    inv_id, _ = wt.node_by_title(api, "Invert")
    for name, value, kind in (("steps", 0, "value_smaller_than_min"),
                              ("solver", "rk4", "value_not_in_list")):
        bad = wt.set_input(copy.deepcopy(api), "Invert", name, value)
        status, answer = comfy_server.post_prompt(bad)
        assert status == 400, answer
        errs = answer["node_errors"][inv_id]["errors"]
        assert [e["type"] for e in errs] == [kind]
        assert errs[0]["extra_info"]["input_name"] == name


FRONTEND_NODE_KEYS = {"id": (int, str), "type": str, "pos": list, "size": list, "flags": dict,
                   "order": int, "mode": int, "properties": dict}


def _check_ui_schema(ui: dict) -> None:
    """The required parts of the frontend's zComfyWorkflow (comfyui_frontend_package 1.35)."""
    assert isinstance(ui["last_node_id"], (int, str)) and isinstance(ui["last_link_id"], int)
    assert isinstance(ui["version"], (int, float)) and isinstance(ui["nodes"], list)
    assert isinstance(ui["links"], list) and isinstance(ui.get("groups", []), list)
    for n in ui["nodes"]:
        for key, typ in FRONTEND_NODE_KEYS.items():
            assert isinstance(n[key], typ), (n.get("id"), key)
        assert len(n["pos"]) == 2 and len(n["size"]) == 2
        for i in n.get("inputs", []):
            assert isinstance(i["name"], str) and "type" in i
            assert i.get("link") is None or isinstance(i["link"], int)
        for o in n.get("outputs", []):
            assert isinstance(o["name"], str) and "type" in o
            assert o.get("links") is None or all(isinstance(x, int) for x in o["links"])
        assert isinstance(n.get("widgets_values", []), (list, dict))
    by_id = {n["id"]: n for n in ui["nodes"]}
    for link in ui["links"]:
        lid, src, src_slot, dst, dst_slot, _typ = link
        assert lid in (by_id[src]["outputs"][src_slot]["links"] or [])
        assert by_id[dst]["inputs"][dst_slot]["link"] == lid


def _ui_graph(ui: dict) -> tuple[dict, set]:
    nodes = {str(n["id"]): (n["type"], n.get("title"), n.get("widgets_values")) for n in ui["nodes"]}
    by_id = {n["id"]: n for n in ui["nodes"]}
    edges = {(str(s), ss, str(d), by_id[d]["inputs"][ds]["name"])
             for _, s, ss, d, ds, _ in ui["links"]}
    return nodes, edges


@pytest.mark.parametrize("api_path", API_FILES, ids=[p.name for p in API_FILES])
def test_ui_twin_matches_api(comfy_server, api_path):
    ui_path = wt.ui_twin(api_path)
    assert ui_path.is_file(), f"{ui_path.name} (UI format) is missing"
    ui = json.loads(ui_path.read_text(encoding="utf-8"))
    api = wt.load_api(api_path)
    _check_ui_schema(ui)
    assert wt.ui_node_types(ui) == wt.node_types(api)
    # same graph, titles and widget values (in the server's widget order) as the converter gives
    info = comfy_server.object_info()
    expected = wt.api_to_ui_module().api_to_ui(api, info)
    assert _ui_graph(ui) == _ui_graph(expected)
    api_edges = {(str(v[0]), v[1], k, name) for k, n in api.items()
                 for name, v in n["inputs"].items() if isinstance(v, list)}
    assert _ui_graph(ui)[1] == api_edges


def test_lazydrag_workflow_runs_over_http_twice(comfy_server):
    """The shipped LazyDrag graph runs end to end; queued again with only the sampler changed (to
    the solver "auto" picks anyway) the sampler re-runs on ComfyUI's cached inversion, whose cache
    the first sampling left as it was, and the edit comes out the same (issue 25)."""
    api = wt.swap_loaders(wt.load_api(wt.API_WORKFLOWS / "lazydrag_flux_api.json"))
    api = wt.set_input(api, "Invert (Uni-Inv)", "steps", 6)
    entry = comfy_server.run(api)
    outs = {wt.node_by_title(api, t)[0] for t in ("Save edited", "Save map preview")}
    for nid in outs:
        assert entry["outputs"][nid]["images"], entry["outputs"]
    files = comfy_server.output_files(entry)
    assert len(files) == 2
    edited = [f for f in files if "lazydrag_0" in f.name or "lazydrag_000" in f.name]
    assert edited and wt.load_png(edited[0]).shape == (256, 256, 3)
    preview = [f for f in files if "map" in f.name][0]
    # the map preview tints the destination green somewhere
    p = wt.load_png(preview)
    assert ((p[..., 1] > p[..., 0] + 40) & (p[..., 1] > p[..., 2] + 40)).any()
    [sampler_id] = [k for k, n in api.items() if n["class_type"] == "FluxDragSampleFromInversion"]
    assert api[sampler_id]["inputs"]["solver"] == "auto"
    api2 = {k: dict(n, inputs=dict(n["inputs"])) for k, n in api.items()}
    api2[sampler_id]["inputs"]["solver"] = "euler"   # what "auto" picks for a Uni-Inv inversion
    entry2 = comfy_server.run(api2)
    assert entry2["status"]["status_str"] == "success"
    cached = {n for kind, data in entry2["status"]["messages"] if kind == "execution_cached"
              for n in data["nodes"]}
    inv_id = wt.node_by_title(api, "Invert (Uni-Inv)")[0]
    assert inv_id in cached and sampler_id not in cached, (cached, inv_id)  # only the sampling re-ran
    edited2 = [f for f in comfy_server.output_files(entry2) if "lazydrag_0" in f.name or "lazydrag_000" in f.name]
    assert edited2 and (wt.load_png(edited2[0]) == wt.load_png(edited[0])).all()
