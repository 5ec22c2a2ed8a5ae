"""Tier 2: one settings dataclass per method is the only place a default lives (issue 25).

- every node default, range and option list equals its dataclass field's (read from the nodes'
  schemas and from a real server's ``/object_info``);
- in real ComfyUI every pack node but the ``*Options`` nodes shows at most 8 widgets;
- the options nodes' ``paper`` preset is the dataclass with the paper's values;
- one validation helper: messages name the input and the fix;
- old API workflows (expert inputs still on the main node) keep working: the values are read
  from the queued prompt and used, with a notice.
"""
from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path

import pytest
from comfy_fixtures import comfy, tiny_cond, tiny_flux  # noqa: F401

pytest_plugins = ["comfy_server"]
pytestmark = pytest.mark.tier2

MAX_WIDGETS = 8


def _tables():
    from fluxdrag.nodes import attention_drag, contextdrag, dragflow, inversion, lazydrag
    from fluxdrag.pipelines.attention_drag import AttentionDragSettings
    from fluxdrag.pipelines.contextdrag import ContextDragSettings
    from fluxdrag.pipelines.dragflow import DragFlowSettings
    from fluxdrag.pipelines.inversion import InversionSettings, SamplingSettings
    from fluxdrag.pipelines.lazydrag import LazyDragSettings

    # node class -> (settings class, the field tags it shows as main widgets)
    return {
        inversion.Invert: (InversionSettings, ("",)),
        inversion.SampleFromInversion: (SamplingSettings, ("",)),
        lazydrag.CorrespondenceMap: (LazyDragSettings, ("map",)),
        lazydrag.LazyDragPatch: (LazyDragSettings, ("patch",)),
        lazydrag.LazyDragOptions: (LazyDragSettings, ("map", "patch")),
        contextdrag.ReverseMapping: (ContextDragSettings, ("map",)),
        contextdrag.ContextTokenInjectionNode: (ContextDragSettings, ("cti",)),
        contextdrag.PositionConsistentAttentionNode: (ContextDragSettings, ("pca",)),
        contextdrag.ContextDragOptions: (ContextDragSettings, ("patch",)),
        attention_drag.AttentionDrag: (AttentionDragSettings, ("",)),
        attention_drag.AttentionDragOptions: (AttentionDragSettings, ("",)),
        dragflow.RegionAffineOptimise: (DragFlowSettings, ("",)),
        dragflow.DragFlowOptions: (DragFlowSettings, ("",)),
    }


def _widgets(schema) -> dict:
    from comfy_api.latest import io

    kinds = (io.Int.Input, io.Float.Input, io.Boolean.Input, io.Combo.Input, io.String.Input)
    return {i.id: i for i in schema.inputs if isinstance(i, kinds)}


def test_every_node_default_equals_the_dataclass_default(comfy):
    from fluxdrag.pipelines.settings import specs

    seen: dict = {}
    for node_cls, (settings_cls, tags) in _tables().items():
        schema = node_cls.define_schema()
        is_options = schema.display_name.endswith(" Options")
        fields = {s.name: s for s in specs(settings_cls)
                  if (tags == ("",) or s.node in tags) and s.main != is_options}
        widgets = {k: w for k, w in _widgets(schema).items() if k != "preset"}
        assert set(widgets) == set(fields), (schema.display_name, set(widgets) ^ set(fields))
        for name, w in widgets.items():
            s = fields[name]
            assert w.default == s.default, (schema.display_name, name, w.default, s.default)
            assert getattr(w, "min", None) in (None, s.min) or s.min is None, (schema.display_name, name)
            if s.max is not None and s.kind in ("int", "float"):
                assert w.max == s.max, (schema.display_name, name)
            if s.options is not None:
                assert list(w.options) == list(s.options), (schema.display_name, name)
            seen.setdefault(settings_cls, set()).add(name)
    # every field of a node-facing dataclass is on some node (LazyDrag's inversion fields are
    # FluxDrag Invert's own, from InversionSettings)
    for settings_cls, names in seen.items():
        missing = {s.name for s in specs(settings_cls) if s.node != "invert"} - names
        assert not missing, (settings_cls.__name__, missing)


def test_each_node_shows_at_most_eight_widgets(comfy_server):
    from tools.object_info import is_widget, opts_of, ordered_inputs, spec_of

    info = comfy_server.get_json("/object_info")
    ours = [v for k, v in info.items() if k.startswith("FluxDrag")]
    assert len(ours) >= 20, len(ours)
    counts = {}
    for node in ours:
        n = 0
        for name in ordered_inputs(node):
            spec, _ = spec_of(node, name)
            if is_widget(spec):
                n += 1 + bool(opts_of(spec).get("control_after_generate"))  # the seed's control widget
        counts[node["display_name"]] = n
    too_many = {k: n for k, n in counts.items() if n > MAX_WIDGETS and not k.endswith(" Options")}
    assert not too_many, too_many
    for method in ("LazyDrag", "DragFlow", "ContextDrag", "AttentionDrag"):
        assert f"FluxDrag {method} Options" in counts


def test_paper_preset_is_the_dataclass_with_the_paper_values(comfy):
    from fluxdrag.nodes.dragflow import DragFlowOptions
    from fluxdrag.nodes.lazydrag import LazyDragOptions
    from fluxdrag.pipelines import dragflow_inputs, lazydrag
    from fluxdrag.pipelines.settings import departures, with_options

    for node_cls, settings_cls, paper in ((LazyDragOptions, lazydrag.LazyDragSettings, lazydrag.PAPER),
                                          (DragFlowOptions, dragflow_inputs.DragFlowSettings,
                                           dragflow_inputs.PAPER)):
        opts = node_cls.execute(preset="paper").args[0]
        s = with_options(settings_cls, "test", opts)
        for name in opts.values:
            assert getattr(s, name) == getattr(paper, name), name
        assert departures(settings_cls)  # the preset changes something
        assert all(getattr(s, k) == v for k, v in departures(settings_cls).items())
        custom = node_cls.execute(preset="custom").args[0]
        assert with_options(settings_cls, "test", custom) == settings_cls()
    # the contradiction issue 25 names: the Patch's content_lock default is the dataclass's
    assert lazydrag.LazyDragSettings().content_lock == 1.0 and lazydrag.PAPER.content_lock == 0.0


def test_validation_names_the_input_and_the_fix(comfy):
    from fluxdrag.pipelines.common import FluxDragInputError
    from fluxdrag.pipelines.dragflow_inputs import DragFlowSettings
    from fluxdrag.pipelines.lazydrag import LazyDragSettings
    from fluxdrag.pipelines.settings import with_options

    with pytest.raises(FluxDragInputError, match=r"Node X: input 'h_max' is 2; it must be between 0 and 1"):
        with_options(LazyDragSettings, "Node X", h_max=2.0)
    with pytest.raises(FluxDragInputError, match=r"input 'optimizer' 'adamw' unknown; choose adam, normalized, sgd"):
        with_options(DragFlowSettings, "Node X", optimizer="adamw")
    with pytest.raises(FluxDragInputError, match=r"input 'options' comes from a LazyDrag options node; "
                                                 r"connect FluxDrag DragFlow Options"):
        from fluxdrag.nodes.lazydrag import LazyDragOptions
        with_options(DragFlowSettings, "Node X", LazyDragOptions.execute().args[0])


def test_no_constructor_default_contradicts_the_dataclass(comfy):
    """Controllers take their settings by keyword with no defaults of their own."""
    import inspect

    from fluxdrag.attention_patches.contextdrag import ContextTokenInjection, PositionConsistentAttention
    from fluxdrag.attention_patches.lazydrag import LazyDragControl
    from fluxdrag.pipelines.contextdrag import CTI_FIELDS, PATCH_FIELDS, PCA_FIELDS
    from fluxdrag.pipelines.lazydrag import PATCH_FIELDS as LD_PATCH

    for cls, names in ((LazyDragControl, LD_PATCH), (ContextTokenInjection, CTI_FIELDS),
                       (PositionConsistentAttention, PCA_FIELDS)):
        params = inspect.signature(cls.__init__).parameters
        for n in names:
            assert params[n].kind is inspect.Parameter.KEYWORD_ONLY and params[n].default is inspect._empty, \
                (cls.__name__, n)
    base = inspect.signature(ContextTokenInjection.__mro__[1].__init__).parameters
    for n in PATCH_FIELDS:
        if n in base and n not in ("double_blocks", "single_blocks"):
            assert base[n].default is inspect._empty, n


class _Hidden:
    def __init__(self, prompt, uid):
        self.prompt, self.unique_id = prompt, uid


def test_old_api_inputs_on_the_main_node_are_used(comfy):
    """An API prompt from before the options nodes carries the expert inputs on the main node."""
    from fluxdrag.nodes.common import legacy_options
    from fluxdrag.nodes.lazydrag import LazyDragPatch
    from fluxdrag.pipelines.lazydrag import LazyDragSettings
    from fluxdrag.pipelines.settings import with_options

    class Old(LazyDragPatch):
        hidden = _Hidden({"10": {"class_type": "FluxDragLazyDragPatch",
                                 "inputs": {"h_max": 0.8, "content_lock": 0.5, "hole_lock": 0.8,
                                            "model": ["1", 0]}}}, "10")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opts = legacy_options(Old, LazyDragSettings, ("patch",), None, "FluxDrag LazyDrag Patch")
    assert opts.values["content_lock"] == 0.5 and opts.values["hole_lock"] == 0.8
    assert any("content_lock, hole_lock" in str(w.message) and "FluxDrag LazyDrag Options" in str(w.message)
               for w in caught)
    assert with_options(LazyDragSettings, "t", opts).content_lock == 0.5
    # a connected options node wins, with a notice
    from fluxdrag.nodes.lazydrag import LazyDragOptions
    connected = LazyDragOptions.execute().args[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert legacy_options(Old, LazyDragSettings, ("patch",), connected, "P") is connected
    assert caught
    # new prompts carry no such inputs: nothing changes
    class New(LazyDragPatch):
        hidden = _Hidden({"10": {"inputs": {"h_max": 0.8}}}, "10")
    assert legacy_options(New, LazyDragSettings, ("patch",), None, "P") is None


def test_settings_fields_have_tooltips_and_ranges(comfy):
    from fluxdrag.pipelines.settings import specs

    for settings_cls, _ in {v for v in _tables().values()}:
        for s in specs(settings_cls):
            assert s.tooltip.strip(), (settings_cls.__name__, s.name)
            if s.kind in ("int", "float"):
                assert s.min is not None and s.max is not None, (settings_cls.__name__, s.name)
        assert dataclasses.is_dataclass(settings_cls)


DATA = Path(__file__).resolve().parent / "data"


def test_old_ui_workflows_keep_their_main_widget_values(comfy):
    """The frontend restores a UI workflow's ``widgets_values`` by position: each node's widgets
    today are the first of its widgets before the options nodes, in the same order, so an old UI
    workflow loads every main widget with its own value (the moved ones fall back to the
    defaults). A widget added after the old ones (the Region Instruction's depth) takes its
    default in an old workflow."""
    from comfy_api.latest import io

    from fluxdrag.nodes import all_nodes

    before = json.loads((DATA / "widgets_before_issue25.json").read_text())["widgets"]
    kinds = (io.Int.Input, io.Float.Input, io.Boolean.Input, io.Combo.Input, io.String.Input)
    for node_cls in all_nodes():
        schema = node_cls.define_schema()
        if schema.node_id not in before:
            assert schema.display_name.endswith(" Options"), schema.node_id  # only the new options nodes
            continue
        now = []
        for i in schema.inputs:
            if isinstance(i, kinds):
                now.append(i.id)
                if getattr(i, "control_after_generate", False):
                    now.append("control_after_generate")
        old = before[schema.node_id]
        assert now[:len(old)] == old[:len(now)], (schema.display_name, now, old)


def test_old_api_workflow_runs_with_its_expert_values(comfy_server):
    """toy_attentiondrag as shipped before the options nodes (inversion_guidance 3.5 and the
    other expert inputs on the AttentionDrag node itself) queues, runs and says where they went."""
    import workflow_tools as wt

    api = json.loads((DATA / "toy_attentiondrag_api_before_issue25.json").read_text())
    assert "inversion_guidance" in wt.node_by_title(api, "AttentionDrag")[1]["inputs"]
    api = wt.set_input(api, "AttentionDrag", "steps", 4)
    entry = comfy_server.run(api, timeout=600)
    assert any(o.get("images") for o in entry["outputs"].values())
    log = comfy_server.log()
    assert "(an older workflow) are now on FluxDrag AttentionDrag Options" in log
    assert "inversion_guidance" in log


def test_old_workflow_with_keep_cache_still_runs(comfy_server):
    """``keep_cache`` left Sample From Inversion (issue 25; it had no effect): an API workflow that
    still sets it queues and runs (ComfyUI ignores an input a node no longer declares), and the
    node no longer lists it."""
    import workflow_tools as wt

    assert "keep_cache" not in str(comfy_server.object_info()["FluxDragSampleFromInversion"]["input"])
    api = wt.load_api(wt.WORKFLOWS / "api" / "toy_invert_reconstruct_api.json")
    wt.node_by_title(api, "Reconstruct")[1]["inputs"]["keep_cache"] = True
    wt.set_input(api, "Invert", "steps", 4)
    entry = comfy_server.run(api, timeout=600)
    assert any(o.get("images") for o in entry["outputs"].values())


def test_dragflow_checks_everything_before_the_inversion(tiny_flux, tiny_cond, monkeypatch):
    """run_dragflow is plan → invert → edit: a bad setting (hole_release, once checked after the
    costly inversion), a bad K/V list or bad regions fail before any model call."""
    import torch

    from fluxdrag.core.instructions import DragInstructions, RegionOp
    from fluxdrag.pipelines import dragflow as P
    from fluxdrag.pipelines.common import FluxDragInputError

    def no_inversion(*a, **k):
        raise AssertionError("the inversion ran before the checks")

    monkeypatch.setattr(P, "run_inversion", no_inversion)
    m = torch.zeros(256, 256, dtype=torch.bool)
    m[32:64, 32:64] = True
    ins = DragInstructions((256, 256), regions=[RegionOp("relocate", m, (48.0, 48.0), (80.0, 48.0), None)])
    lat = {"samples": torch.zeros(1, 16, 32, 32)}
    for bad, what in (({"hole_release": 1.5}, "'hole_release' is 1.5; it must be between 0 and 1"),
                      ({"kv_preset": "custom", "kv_custom": "double: x"}, "'kv_custom'"),
                      ({"skip_steps": 30}, "'skip_steps' (30) must be smaller")):
        with pytest.raises(FluxDragInputError, match=re.escape(what)):
            P.run_dragflow(tiny_flux, lat, tiny_cond, tiny_cond, ins, settings=P.DragFlowSettings(**bad))
    with pytest.raises(AssertionError, match="the inversion ran"):  # valid: reaches the inversion
        P.run_dragflow(tiny_flux, lat, tiny_cond, tiny_cond, ins, settings=P.DragFlowSettings())


def test_docs_settings_table_is_generated_from_the_dataclasses(comfy):
    from scripts import settings_tables as mod

    root = Path(__file__).resolve().parent.parent
    assert (root / "docs" / "settings.md").read_text(encoding="utf-8") == mod.tables(), \
        "docs/settings.md is stale: run python -m scripts.settings_tables"


def test_options_nodes_from_older_workflows_run_without_newer_fields(comfy_server):
    """An options node saved before a field existed (LazyDrag's ``swing``, ContextDrag's
    ``subtoken``, DragFlow's ``init``…) still queues: every options widget is optional and a
    missing one takes the dataclass default."""
    import workflow_tools as wt

    info = comfy_server.object_info()
    for node in ("FluxDragLazyDragOptions", "FluxDragDragFlowOptions", "FluxDragContextDragOptions",
                 "FluxDragAttentionDragOptions"):
        required = set(info[node]["input"].get("required", {}))
        assert required <= {"preset"}, f"{node}: required options widgets {required - {'preset'}}"
    api = wt.load_api(wt.WORKFLOWS / "api" / "toy_dragflow_api.json")
    title, inputs = "DragFlow options", wt.node_by_title(api, "DragFlow options")[1]["inputs"]
    for name in ("init", "target_warp", "hole_margin", "adam_lr"):
        inputs.pop(name, None)
    assert "init" not in wt.node_by_title(api, title)[1]["inputs"]
    entry = comfy_server.run(api, timeout=600)
    assert any(o.get("images") for o in entry["outputs"].values())
