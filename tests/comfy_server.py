"""A real ComfyUI server for tier-2 tests, started once per test session.

``comfy_server`` starts ``python main.py --cpu`` (``tools.comfy_server``) with the pack
and the test-only loaders in ``tests/comfy_test_nodes``, both loaded from where they lie; every
folder the server writes is temporary, so nothing is written into the ComfyUI checkout.

Use it from a test module with ``pytest_plugins = ["comfy_server"]``: that registers the fixture
and a report hook that appends the server log to the report of every failed test using it.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tools import comfy_server as _server
from tools.comfy_server import (  # noqa: F401  (re-exported for tests and scripts)
    IMPORT_FAILURE_MARKERS,
    PACK_LINK,
    STARTUP_TIMEOUT_S,
    TEST_NODES_LINK,
    ServerClient,
    ServerError,
    describe_error,
    free_port,
    stop_server,
)

ROOT = Path(__file__).resolve().parent.parent
TEST_NODES = ROOT / "tests" / "comfy_test_nodes"


def start_server(comfyui: Path, root: Path, timeout: float = STARTUP_TIMEOUT_S) -> ServerClient:
    """Start ComfyUI with the pack and the test loaders; returns once /object_info answers."""
    return _server.start_server(comfyui, root, timeout, extra_nodes=[TEST_NODES], pythonpath=[ROOT])


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """A running ComfyUI (one per session) with the pack and the test loaders installed."""
    from tools.comfy_env import find_comfyui, not_found_message

    comfyui = find_comfyui()
    if comfyui is None:
        pytest.skip("tier 2 skipped: " + not_found_message())
    client = start_server(comfyui, tmp_path_factory.mktemp("comfy_server"))
    try:
        yield client
    finally:
        stop_server(client)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Append the server log to the report of a failed test that used ``comfy_server``."""
    report = yield
    if report.failed and "comfy_server" in getattr(item, "fixturenames", ()):
        client = item.funcargs.get("comfy_server") if hasattr(item, "funcargs") else None
        if isinstance(client, ServerClient):
            report.sections.append(("ComfyUI server log", client.log()[-20000:]))
    return report
