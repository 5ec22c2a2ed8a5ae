"""Start and drive a real ComfyUI server on loopback (stdlib only): tests, demo, dev scripts.

``start_server`` runs ``python main.py --cpu`` from a ComfyUI checkout on a free loopback port,
with every writable folder (output, input, temp, user, custom_nodes) in a given directory: an
extra-model-paths YAML adds a ``custom_nodes`` folder holding a symlink to the pack
(``ComfyUI-FluxDrag``) and to any extra node folders, so nothing is written into the checkout.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACK_LINK = "ComfyUI-FluxDrag"
TEST_NODES_LINK = "FluxDragTestNodes"
STARTUP_TIMEOUT_S = 90.0
# what ComfyUI 0.8.0 logs when a custom node package fails (nodes.py, load_custom_node and the
# import-time summary)
IMPORT_FAILURE_MARKERS = ("Cannot import", "IMPORT FAILED", "Error while calling comfy_entrypoint",
                          "did not return a ComfyExtension", "Skip ")


class ServerError(AssertionError):
    """The server refused or failed something; the message carries the server's answer."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _multipart(field: str, filename: str, data: bytes, fields: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for k, v in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                     .encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                 f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'.encode())
    parts.append(data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def describe_error(status: dict) -> str:
    """Readable text for a failed prompt's history status (node, exception, traceback)."""
    for kind, data in status.get("messages", []):
        if kind == "execution_error":
            tb = "".join(data.get("traceback", []))
            return (f"node {data.get('node_id')} ({data.get('node_type')}): "
                    f"{data.get('exception_type')}: {data.get('exception_message')}\n{tb}")
    return json.dumps(status, indent=1)[:4000]


class ComfyClient:
    """Small HTTP client for one running server, plus its folders and log."""

    pack_link = PACK_LINK
    test_nodes_link = TEST_NODES_LINK

    def __init__(self, base_url: str, proc: subprocess.Popen, log_path: Path, root: Path):
        self.base_url = base_url
        self.proc = proc
        self.log_path = log_path
        self.root = root
        self.input_dir = root / "input"
        self.output_dir = root / "output"
        self.custom_nodes_dir = root / "custom_nodes"
        self.client_id = uuid.uuid4().hex
        self._object_info: dict | None = None

    # -- transport -------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json", timeout: float = 30.0
                ) -> tuple[int, bytes]:
        """(status, body) of one request; HTTP errors are returned, not raised."""
        req = urllib.request.Request(self.base_url + path, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path: str, timeout: float = 30.0):
        status, body = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise ServerError(f"GET {path} -> HTTP {status}: {body[:2000]!r}")
        return json.loads(body)

    # -- API -------------------------------------------------------------------------------
    def log(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def object_info(self, refresh: bool = False) -> dict:
        if self._object_info is None or refresh:
            self._object_info = self.get_json("/object_info", timeout=60.0)
        return self._object_info

    def post_prompt(self, prompt: dict) -> tuple[int, dict]:
        """POST /prompt; returns (HTTP status, decoded answer) whatever the status."""
        body = json.dumps({"prompt": prompt, "client_id": self.client_id}).encode()
        status, answer = self.request("POST", "/prompt", body)
        try:
            return status, json.loads(answer)
        except json.JSONDecodeError:
            return status, {"raw": answer.decode("utf-8", "replace")}

    def queue(self, prompt: dict) -> str:
        """Queue an API-format prompt; its prompt_id (raises with node_errors when refused, also
        when ComfyUI accepted it but dropped some outputs as invalid)."""
        status, answer = self.post_prompt(prompt)
        if status != 200 or "prompt_id" not in answer or answer.get("node_errors"):
            raise ServerError(f"/prompt refused the prompt (HTTP {status}): "
                              f"{json.dumps(answer, indent=1)[:6000]}")
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 120.0) -> dict:
        """Poll /history/{id} until the prompt finishes; its history entry (raises on error)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hist = self.get_json(f"/history/{prompt_id}")
            entry = hist.get(prompt_id)
            if entry is not None:
                status = entry.get("status", {})
                if status.get("status_str") == "error":
                    raise ServerError(f"prompt {prompt_id} failed:\n{describe_error(status)}")
                if status.get("completed") or status.get("status_str") == "success":
                    return entry
            if self.proc.poll() is not None:
                raise ServerError(f"server exited with code {self.proc.returncode} while "
                                  f"running prompt {prompt_id}")
            time.sleep(0.1)
        raise ServerError(f"prompt {prompt_id} did not finish in {timeout} s")

    def run(self, prompt: dict, timeout: float = 120.0) -> dict:
        return self.wait(self.queue(prompt), timeout)

    def upload_image(self, path: str | os.PathLike, name: str | None = None) -> str:
        """Upload a file to the input folder through /upload/image; the name to use in LoadImage."""
        path = Path(path)
        body, ctype = _multipart("image", name or path.name, path.read_bytes(),
                                 {"overwrite": "true", "type": "input"})
        status, answer = self.request("POST", "/upload/image", body, ctype)
        if status != 200:
            raise ServerError(f"/upload/image -> HTTP {status}: {answer[:2000]!r}")
        info = json.loads(answer)
        return f"{info['subfolder']}/{info['name']}" if info.get("subfolder") else info["name"]

    def output_files(self, entry: dict, kind: str = "images") -> list[Path]:
        """Files a finished prompt's history entry lists under ``kind`` (type "output")."""
        files = []
        for out in entry.get("outputs", {}).values():
            for item in out.get(kind, []):
                if item.get("type", "output") == "output":
                    files.append(self.output_dir / item.get("subfolder", "") / item["filename"])
        return files

    def import_failures(self) -> list[str]:
        """Log lines saying a package in our temporary custom_nodes folder failed to load."""
        folder = str(self.custom_nodes_dir)
        return [ln for ln in self.log().splitlines()
                if folder in ln and any(m in ln for m in IMPORT_FAILURE_MARKERS)]

    def import_time_line(self, link_name: str) -> str | None:
        """The 'Import times for custom nodes' line for one package (None if it was not tried)."""
        target = str(self.custom_nodes_dir / link_name)
        for ln in self.log().splitlines():
            if "seconds" in ln and ln.rstrip().endswith(target):
                return ln
        return None


def _write_layout(root: Path, extra_nodes: dict | None = None) -> Path:
    for d in ("custom_nodes", "input", "output", "temp", "user", "models"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "custom_nodes" / PACK_LINK).symlink_to(ROOT, target_is_directory=True)
    for link, path in (extra_nodes or {}).items():
        (root / "custom_nodes" / link).symlink_to(Path(path), target_is_directory=True)
    cfg = root / "extra_model_paths.yaml"
    cfg.write_text(f"fluxdrag_tests:\n    custom_nodes: {json.dumps(str(root / 'custom_nodes'))}\n",
                   encoding="utf-8")
    return cfg


def start_server(comfyui: Path, root: Path, timeout: float = STARTUP_TIMEOUT_S,
                 extra_nodes: dict | None = None) -> ComfyClient:
    """Start ComfyUI with the pack (and ``extra_nodes``: link name → node folder); returns once
    /object_info answers."""
    cfg = _write_layout(root, extra_nodes)
    port = free_port()
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--disable-auto-launch", "--extra-model-paths-config", str(cfg),
           "--output-directory", str(root / "output"), "--input-directory", str(root / "input"),
           "--temp-directory", str(root / "temp"), "--user-directory", str(root / "user"),
           "--database-url", "sqlite:///:memory:", "--disable-api-nodes"]
    log_path = root / "server.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=comfyui, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
    client = ComfyClient(f"http://127.0.0.1:{port}", proc, log_path, root)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServerError(f"ComfyUI exited with code {proc.returncode} during startup.\n"
                              f"--- server log ---\n{client.log()}")
        try:
            status, _ = client.request("GET", "/object_info", timeout=30.0)
            if status == 200:
                return client
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_server(client)
            raise ServerError(f"ComfyUI did not answer /object_info within {timeout:.0f} s.\n"
                              f"--- server log ---\n{client.log()}")
        time.sleep(0.25)


def stop_server(client: ComfyClient) -> None:
    proc = client.proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


