"""Start and drive a real ComfyUI server on loopback: tests, demo, dev scripts (the client is
``tools/comfy_client.py``).

``start_server`` runs ``python main.py --cpu`` from a ComfyUI checkout on a free loopback port,
with every writable folder (output, input, temp, user) in a given directory, so nothing is
written into the checkout. The pack is loaded from where it lies, with no symlink or copy: when it
sits in the checkout's own ``custom_nodes`` ComfyUI finds it there; otherwise an extra-model-paths
YAML adds the folder that holds it as a ``custom_nodes`` folder. ``--disable-all-custom-nodes``
with a whitelist of the pack's folder name (and any extra node folders) keeps every other package
in those folders from loading.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from .comfy_client import ComfyClient, ComfyError, describe_failure

ROOT = Path(__file__).resolve().parent.parent
# the pack's folder name is its ComfyUI package name (ComfyUI-FluxDrag in a normal install)
PACK_LINK = ROOT.name
TEST_NODES_LINK = "comfy_test_nodes"
STARTUP_TIMEOUT_S = 90.0
# what ComfyUI 0.8.0 logs when a custom node package fails (nodes.py, load_custom_node and the
# import-time summary)
IMPORT_FAILURE_MARKERS = ("Cannot import", "IMPORT FAILED", "Error while calling comfy_entrypoint",
                          "did not return a ComfyExtension", "Skip ")


class ServerError(ComfyError, AssertionError):
    """The server refused or failed something; the message carries the server's answer (an
    AssertionError, so a test failing on it reads as a failed check)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def describe_error(status: dict) -> str:
    """Readable text for a failed prompt's history status (node, exception, traceback)."""
    return describe_failure(status)


class ServerClient(ComfyClient):
    """The client of a server :func:`start_server` started: its process, folders and log."""

    error = ServerError
    wait_timeout = 120.0
    pack_link = PACK_LINK
    test_nodes_link = TEST_NODES_LINK

    def __init__(self, base_url: str, proc: subprocess.Popen, log_path: Path, root: Path,
                 node_paths: dict[str, str] | None = None):
        super().__init__(base_url, timeout=30.0)
        self.proc = proc
        self.log_path = log_path
        self.root = root
        self.input_dir = root / "input"
        self.output_dir = root / "output"
        # package name → the path ComfyUI loads it from (as its log prints it)
        self.node_paths = dict(node_paths or {})
        self._object_info: dict | None = None

    def alive(self) -> str | None:
        if self.proc.poll() is not None:
            return f"server exited with code {self.proc.returncode}"
        return None

    def log(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def object_info(self, refresh: bool = False) -> dict:
        if self._object_info is None or refresh:
            self._object_info = super().object_info()
        return self._object_info

    def output_files(self, entry: dict, kind: str = "images") -> list[Path]:
        """Files a finished prompt's history entry lists under ``kind`` (type "output")."""
        files = []
        for out in entry.get("outputs", {}).values():
            for item in out.get(kind, []):
                if item.get("type", "output") == "output":
                    files.append(self.output_dir / item.get("subfolder", "") / item["filename"])
        return files

    def import_failures(self) -> list[str]:
        """Log lines saying one of the packages this server was started with failed to load."""
        paths = list(self.node_paths.values())
        return [ln for ln in self.log().splitlines()
                if any(p in ln for p in paths) and any(m in ln for m in IMPORT_FAILURE_MARKERS)]

    def import_time_line(self, name: str) -> str | None:
        """The 'Import times for custom nodes' line for one package (None if it was not tried)."""
        target = self.node_paths[name]
        for ln in self.log().splitlines():
            if "seconds" in ln and ln.rstrip().endswith(target):
                return ln
        return None


def _write_layout(comfyui: Path, root: Path, node_dirs: list[Path]) -> tuple[Path | None, dict[str, str]]:
    """Writable folders under ``root`` and an extra-model-paths YAML naming the folders that hold
    ``node_dirs`` (the checkout's own ``custom_nodes`` is searched anyway; no YAML when all lie
    there). Returns the YAML (or None) and package name → the path ComfyUI will load it from."""
    for d in ("input", "output", "temp", "user", "models"):
        (root / d).mkdir(parents=True, exist_ok=True)
    own = (comfyui / "custom_nodes").resolve()
    parents: list[str] = []
    paths: dict[str, str] = {}
    for d in node_dirs:
        d = Path(d).resolve()
        if d.parent == own:
            paths[d.name] = os.path.join(str(comfyui / "custom_nodes"), d.name)
        else:
            if str(d.parent) not in parents:
                parents.append(str(d.parent))
            paths[d.name] = os.path.join(str(d.parent), d.name)
    if not parents:
        return None, paths
    lines = ["fluxdrag_server:", "    custom_nodes: |"] + [f"        {p}" for p in parents]
    cfg = root / "extra_model_paths.yaml"
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cfg, paths


def start_server(comfyui: Path, root: Path, timeout: float = STARTUP_TIMEOUT_S,
                 extra_nodes: list | tuple = (), pythonpath: list | tuple = ()) -> ServerClient:
    """Start ComfyUI with the pack (and ``extra_nodes``: more node package folders, loaded by
    their folder names); returns once /object_info answers. ``pythonpath``: folders appended to
    the server's ``PYTHONPATH`` (the test-only nodes import ``tools`` from the repository root;
    the pack itself needs none)."""
    node_dirs = [ROOT, *map(Path, extra_nodes)]
    names = [d.name for d in node_dirs]
    if len(set(names)) != len(names):
        raise ValueError(f"node packages need distinct folder names, got {names}")
    cfg, node_paths = _write_layout(Path(comfyui), root, node_dirs)
    port = free_port()
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--disable-auto-launch", *(["--extra-model-paths-config", str(cfg)] if cfg else []),
           "--disable-all-custom-nodes", "--whitelist-custom-nodes", *names,
           "--output-directory", str(root / "output"), "--input-directory", str(root / "input"),
           "--temp-directory", str(root / "temp"), "--user-directory", str(root / "user"),
           "--database-url", "sqlite:///:memory:", "--disable-api-nodes"]
    log_path = root / "server.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), *filter(None, [env.get("PYTHONPATH")])])
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=comfyui, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
    client = ServerClient(f"http://127.0.0.1:{port}", proc, log_path, root, node_paths)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServerError(f"ComfyUI exited with code {proc.returncode} during startup.\n"
                              f"--- server log ---\n{client.log()}")
        try:
            status, _ = client.request("GET", "/object_info", timeout=30.0)
            if status == 200:
                return client
        except ServerError:  # not listening yet
            pass
        if time.monotonic() > deadline:
            stop_server(client)
            raise ServerError(f"ComfyUI did not answer /object_info within {timeout:.0f} s.\n"
                              f"--- server log ---\n{client.log()}")
        time.sleep(0.25)


def stop_server(client: ServerClient) -> None:
    client.close()
    proc = client.proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


