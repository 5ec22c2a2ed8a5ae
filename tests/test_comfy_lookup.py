"""Where the pack looks for ComfyUI (tools/comfy_env.find_comfyui): $COMFYUI_PATH, then the
ComfyUI whose custom_nodes holds the pack, then ~/comfy/ComfyUI; one message when none is found."""
from pathlib import Path

from tools.comfy_env import find_comfyui, not_found_message


def _tree(path: Path) -> Path:
    (path / "comfy").mkdir(parents=True)
    (path / "main.py").write_text("")
    return path


def _layout(tmp_path):
    env_tree = _tree(tmp_path / "envcomfy")
    enclosing = _tree(tmp_path / "anywhere" / "ComfyUI")
    pack = enclosing / "custom_nodes" / "ComfyUI-FluxDrag"
    pack.mkdir(parents=True)
    home = tmp_path / "home"
    home_tree = _tree(home / "comfy" / "ComfyUI")
    loose_pack = tmp_path / "src" / "ComfyUI-FluxDrag"
    loose_pack.mkdir(parents=True)
    return env_tree, enclosing, pack, home, home_tree, loose_pack


def test_env_var_first(tmp_path):
    env_tree, _, pack, home, _, _ = _layout(tmp_path)
    assert find_comfyui({"COMFYUI_PATH": str(env_tree)}, pack, home) == env_tree.resolve()


def test_enclosing_tree_before_home(tmp_path):
    _, enclosing, pack, home, _, _ = _layout(tmp_path)
    assert find_comfyui({}, pack, home) == enclosing.resolve()


def test_env_var_that_is_not_comfyui_falls_through(tmp_path):
    _, enclosing, pack, home, _, _ = _layout(tmp_path)
    assert find_comfyui({"COMFYUI_PATH": str(tmp_path / "nothing")}, pack, home) == enclosing.resolve()


def test_home_default_last(tmp_path):
    _, _, _, home, home_tree, loose_pack = _layout(tmp_path)
    assert find_comfyui({}, loose_pack, home) == home_tree.resolve()


def test_none_found_names_the_three_places(tmp_path):
    loose_pack = tmp_path / "src" / "ComfyUI-FluxDrag"
    loose_pack.mkdir(parents=True)
    home = tmp_path / "emptyhome"
    assert find_comfyui({}, loose_pack, home) is None
    msg = not_found_message({"COMFYUI_PATH": str(tmp_path / "nope")}, loose_pack, home)
    assert "$COMFYUI_PATH" in msg and str(tmp_path / "nope") in msg
    assert "holding this pack" in msg and str(loose_pack) in msg
    assert "~/comfy/ComfyUI" in msg
    assert "comfy install" in msg and "custom_nodes" in msg
    assert "(not set)" in not_found_message({}, loose_pack, home)
