#!/usr/bin/env python3
"""Queue an API-format workflow on one or several ComfyUI servers and download what it saves.

    python scripts/queue_workflow.py lazydrag_flux \\
        --set "Drag instructions.drags_json=@drags.json" --set "9.steps=20" \\
        --server http://127.0.0.1:8188 --out out/lazydrag

* WORKFLOW is a path to an ``*_api.json`` file or the name of a shipped one in ``workflows/api/``
  (``lazydrag_flux`` -> ``workflows/api/lazydrag_flux_api.json``).
* ``--set NODE.INPUT=VALUE`` (repeatable): NODE is a node id or its title (``_meta.title``, as
  shown in the UI); VALUE is converted to the type the input already has (int, float, bool,
  string); ``@path`` reads the value from a file (e.g. a drags JSON). An ``image`` value of a
  LoadImage node that names a local file (absolute, relative to the working directory, or next
  to the workflow / in ``workflows/example_inputs``) is uploaded through ``/upload/image`` first.
* ``--server`` (repeatable): jobs (``--repeat N`` copies, ``--increment NODE.INPUT`` adds the job
  index, e.g. to a seed) are given to the servers round-robin, one worker per server.
* Progress is followed over the server's websocket (a minimal RFC 6455 client below, standard
  library only; if the websocket cannot be opened, ``/history`` is polled instead). Files listed
  in the outputs (``images`` etc. of type ``output``; ``--temp`` adds previews) are downloaded
  into ``--out``.
* Exit status: 0 when every job succeeded; 2 when the server refused the prompt (its validation
  message is printed, naming the node and input), 1 for execution errors, time-outs or bad
  arguments.

Standard library only (ComfyUI itself ships neither ``requests`` nor ``websocket-client``).
The functions are importable (``scripts/dragbench_batch.py`` uses them).
"""
from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import os
import re
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
API_WORKFLOWS = WORKFLOWS / "api"  # the shipped API twins (workflows/ itself holds the UI files)
EXAMPLE_INPUTS = WORKFLOWS / "example_inputs"
IMAGE_LOADERS = {"LoadImage", "LoadImageMask", "LoadImageOutput"}
# hidden --swap-test-loaders (tests only): real loaders -> the tiny test loaders. The mapping is
# tests/workflow_tools.py's LOADER_SWAP when the checkout has it; this is the fallback.
TEST_LOADER_SWAP = {"UNETLoader": "FluxDragTestTinyUNET", "DualCLIPLoader": "FluxDragTestTinyCLIP",
                    "VAELoader": "FluxDragTestTinyVAE"}


class QueueError(RuntimeError):
    """Something went wrong; ``exit_code`` 2 = refused by the server's validation, 1 = other."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


# ------------------------------------------------------------------------------------------------
# workflow handling (pure)


def resolve_workflow(name_or_path: str) -> Path:
    """A path to an API workflow: the path itself, or ``workflows/api/<name>_api.json``."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (API_WORKFLOWS / f"{name_or_path}_api.json", API_WORKFLOWS / name_or_path):
        if cand.is_file() and cand.name.endswith("_api.json"):
            return cand
    shipped = ", ".join(sorted(q.name[:-9] for q in API_WORKFLOWS.glob("*_api.json")))
    raise QueueError(f"workflow {name_or_path!r} not found: give a path to an *_api.json file or "
                     f"one of the shipped names: {shipped}")


def load_workflow(path: str | Path) -> dict:
    """An API-format workflow ``{id: {"class_type", "inputs", "_meta"}}`` (refuses UI files)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise QueueError(f"cannot read workflow {path}: {e}") from None
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise QueueError(f"{path} is a UI workflow; use its API twin (*_api.json), or export one "
                         "with 'Export (API)' in ComfyUI")
    if not isinstance(data, dict) or not data or not all(
            isinstance(n, dict) and "class_type" in n for n in data.values()):
        raise QueueError(f"{path} is not an API-format workflow ({{id: {{class_type, inputs}}}})")
    return data


def node_title(node: dict) -> str:
    return node.get("_meta", {}).get("title") or node["class_type"]


def find_node(prompt: dict, ref: str) -> str:
    """Node id for ``ref``: an id, else the one node titled ``ref``, else the one of that type."""
    if ref in prompt:
        return ref
    for key in (lambda n: n.get("_meta", {}).get("title"), lambda n: n["class_type"]):
        hits = [k for k, n in prompt.items() if key(n) == ref]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise QueueError(f"{len(hits)} nodes match {ref!r} (ids {', '.join(hits)}); use the id")
    titles = ", ".join(f"{k} {node_title(n)!r}" for k, n in prompt.items())
    raise QueueError(f"no node {ref!r} in the workflow; nodes: {titles}")


_SET = re.compile(r"^(?P<node>.+)\.(?P<input>[A-Za-z_][\w]*)=(?P<value>.*)$", re.S)


def parse_set(spec: str) -> tuple[str, str, str]:
    """``"NODE.INPUT=VALUE"`` -> (node ref, input name, raw value). NODE may contain dots."""
    m = _SET.match(spec)
    if not m:
        raise QueueError(f"--set {spec!r}: write NODE.INPUT=VALUE, e.g. '7.steps=6' or "
                         "'Drag Editor.drags=@drags.json'")
    return m["node"], m["input"], m["value"]


def read_value(raw: str, base: Path | None = None) -> str:
    """``@path`` -> the file's text; anything else unchanged."""
    if not raw.startswith("@"):
        return raw
    path = Path(raw[1:]).expanduser()
    if base is not None and not path.is_absolute() and not path.exists():
        path = base / path
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise QueueError(f"cannot read {raw!r}: {e}") from None


def coerce(raw: str, current: Any, where: str) -> Any:
    """Convert a command-line string to the type of the input's current value."""
    if isinstance(current, list):
        raise QueueError(f"{where} is connected to node {current[0]} (output {current[1]}); only "
                         "literal inputs can be set")
    try:
        if isinstance(current, bool):
            low = raw.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return low in ("true", "1", "yes")
        if isinstance(current, int):
            f = float(raw)
            if f != int(f):
                raise ValueError(raw)
            return int(f)
        if isinstance(current, float):
            return float(raw)
    except ValueError:
        raise QueueError(f"{where} expects a {type(current).__name__}, got {raw!r}") from None
    if current is None:  # a new input: JSON scalars keep their type, anything else is text
        try:
            v = json.loads(raw)
            return v if isinstance(v, (int, float, bool)) else raw
        except json.JSONDecodeError:
            return raw
    return raw


def apply_sets(prompt: dict, specs: Iterable[str], base: Path | None = None) -> dict:
    """A copy of ``prompt`` with every ``NODE.INPUT=VALUE`` applied."""
    out = copy.deepcopy(prompt)
    for spec in specs:
        ref, name, raw = parse_set(spec)
        nid = find_node(out, ref)
        inputs = out[nid].setdefault("inputs", {})
        where = f"--set {ref}.{name} (node {nid} {node_title(out[nid])!r})"
        inputs[name] = coerce(read_value(raw, base), inputs.get(name), where)
    return out


def loader_swap_for_tests() -> dict[str, str]:
    """Loader class -> test loader class, from tests/workflow_tools.py when present."""
    import importlib.util

    path = ROOT / "tests" / "workflow_tools.py"
    if path.is_file():
        spec = importlib.util.spec_from_file_location("fluxdrag_workflow_tools", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return dict(getattr(mod, "LOADER_SWAP", TEST_LOADER_SWAP))
    return dict(TEST_LOADER_SWAP)


def swap_test_loaders(prompt: dict) -> dict:
    swap = loader_swap_for_tests()
    out = copy.deepcopy(prompt)
    for n in out.values():
        n["class_type"] = swap.get(n["class_type"], n["class_type"])
    return out


def local_image(value: Any, search: Iterable[Path]) -> Path | None:
    """The local file an image widget value names, if any (else None: a server-side name)."""
    if not isinstance(value, str) or not value or value.endswith("]"):  # "x.png [input]"
        return None
    p = Path(value).expanduser()
    if p.is_absolute() or os.sep in value or "/" in value:
        return p if p.is_file() else None
    for d in (Path.cwd(), *search):
        if (d / p).is_file():
            return d / p
    return None


def assign_round_robin(n_jobs: int, n_servers: int) -> list[list[int]]:
    """Job indices per server: job i goes to server i mod n."""
    return [list(range(s, n_jobs, n_servers)) for s in range(n_servers)]


def describe_refusal(answer: dict, prompt: dict) -> str:
    """Readable text of a /prompt 400 answer: the error and each node's errors."""
    err = answer.get("error", answer)
    lines = []
    if isinstance(err, dict):
        details = err.get("details")
        lines.append(err.get("message", "prompt refused") + (f": {details}" if details
                                                             and isinstance(details, str) else ""))
    else:
        lines.append(str(err))
    for nid, ne in (answer.get("node_errors") or {}).items():
        title = node_title(prompt[nid]) if nid in prompt else ne.get("class_type", "?")
        for e in ne.get("errors", []):
            d = f": {e['details']}" if e.get("details") else ""
            lines.append(f"  node {nid} ({ne.get('class_type', '?')} {title!r}): {e.get('message')}{d}")
    return "\n".join(lines)


def describe_failure(status: dict) -> str:
    """The execution_error of a history entry's status as 'node N (type): Exception: message'."""
    for kind, data in status.get("messages", []):
        if kind == "execution_error":
            return (f"node {data.get('node_id')} ({data.get('node_type')}): "
                    f"{data.get('exception_type')}: {data.get('exception_message')}")
        if kind == "execution_interrupted":
            return f"interrupted at node {data.get('node_id')}"
    return "failed: " + json.dumps(status)[:2000]


# ------------------------------------------------------------------------------------------------
# a minimal websocket client (RFC 6455; text frames, ping/pong, fragmentation, close)


class WebSocketClosed(ConnectionError):
    pass


class WebSocket:
    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, url: str, timeout: float = 10.0):
        u = urllib.parse.urlsplit(url)
        secure = u.scheme in ("wss", "https")
        host, port = u.hostname, u.port or (443 if secure else 80)
        sock = socket.create_connection((host, port), timeout=timeout)
        if secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.buf = b""
        self._parts: list[bytes] = []
        self._first = 1
        key = base64.b64encode(os.urandom(16)).decode()
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise WebSocketClosed("connection closed during the websocket handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise WebSocketClosed(f"websocket handshake refused: {lines[0]}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        want = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != want:
            raise WebSocketClosed("websocket handshake: bad Sec-WebSocket-Accept")

    def _fill(self, n: int) -> None:
        """Read until at least n bytes are buffered (a time-out leaves the buffer intact)."""
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise WebSocketClosed("websocket closed by the server")
            self.buf += chunk

    def _frame(self) -> tuple[bool, int, bytes]:
        """One frame (fin, opcode, payload); bytes are consumed only once it is complete."""
        self._fill(2)
        b0, b1 = self.buf[0], self.buf[1]
        n, pos = b1 & 0x7F, 2
        if n == 126:
            self._fill(4)
            n, pos = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._fill(10)
            n, pos = struct.unpack("!Q", self.buf[2:10])[0], 10
        masked = bool(b1 & 0x80)
        self._fill(pos + 4 * masked + n)
        mask = self.buf[pos:pos + 4] if masked else None
        pos += 4 * masked
        data, self.buf = self.buf[pos:pos + n], self.buf[pos + n:]
        if mask:
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
        return bool(b0 & 0x80), b0 & 0x0F, data

    def send(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        self.sock.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))

    def recv(self, timeout: float | None = None) -> tuple[int, bytes]:
        """Next complete message (opcode 1 text / 2 binary, payload); answers pings itself.

        Raises ``socket.timeout`` when nothing arrives in ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        while True:
            fin, op, data = self._frame()
            if op == 0x9:  # ping
                self.send(0xA, data)
                continue
            if op == 0xA:  # pong
                continue
            if op == 0x8:  # close
                try:
                    self.send(0x8, data[:2])
                except OSError:
                    pass
                raise WebSocketClosed("websocket closed by the server")
            if op != 0:  # first frame of a message (continuations have opcode 0)
                self._first, self._parts = op, []
            self._parts.append(data)
            if fin:
                parts, self._parts = self._parts, []
                return self._first or 1, b"".join(parts)

    def close(self) -> None:
        try:
            self.send(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()


# ------------------------------------------------------------------------------------------------
# one server


def _multipart(fields: dict[str, str], file_field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = []
    for k, v in fields.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
               f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode())
    out += [data, f"\r\n--{boundary}--\r\n".encode()]
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


class ComfyServer:
    """HTTP + websocket client of one ComfyUI server (standard library only)."""

    def __init__(self, url: str, client_id: str | None = None, timeout: float = 60.0):
        self.url = url.rstrip("/")
        if "://" not in self.url:
            self.url = "http://" + self.url
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout = timeout
        self.ws: WebSocket | None = None
        self.ws_failed: str | None = None

    def __repr__(self) -> str:
        return f"ComfyServer({self.url})"

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError as e:
            raise QueueError(f"cannot reach ComfyUI at {self.url}: {e}") from None

    def get_json(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise QueueError(f"{self.url}{path} -> HTTP {status}: {body[:500]!r}")
        return json.loads(body)

    def upload_image(self, path: Path, overwrite: bool = False, subfolder: str = "") -> str:
        """Upload to the server's input folder; the name to put in LoadImage (a file with the
        same name and content is reused, a different one gets a new name unless ``overwrite``)."""
        body, ctype = _multipart({"overwrite": "true" if overwrite else "false", "type": "input",
                                  "subfolder": subfolder}, "image", path.name, path.read_bytes())
        status, answer = self.request("POST", "/upload/image", body, ctype)
        if status != 200:
            raise QueueError(f"upload of {path} to {self.url} failed: HTTP {status}: {answer[:500]!r}")
        info = json.loads(answer)
        return f"{info['subfolder']}/{info['name']}" if info.get("subfolder") else info["name"]

    def upload_local_images(self, prompt: dict, search: Iterable[Path] = ()) -> dict:
        """A copy whose LoadImage values naming local files point to uploaded copies."""
        out = copy.deepcopy(prompt)
        for n in out.values():
            if n["class_type"] in IMAGE_LOADERS:
                p = local_image(n.get("inputs", {}).get("image"), search)
                if p is not None:
                    n["inputs"]["image"] = self.upload_image(p)
        return out

    def open_ws(self) -> WebSocket | None:
        """The websocket for this client id (opened once; None when it cannot be opened)."""
        if self.ws is None and self.ws_failed is None:
            u = urllib.parse.urlsplit(self.url)
            scheme = "wss" if u.scheme == "https" else "ws"
            try:
                self.ws = WebSocket(f"{scheme}://{u.netloc}/ws?clientId={self.client_id}")
            except (OSError, WebSocketClosed) as e:
                self.ws_failed = str(e)
        return self.ws

    def queue(self, prompt: dict) -> str:
        """POST /prompt; the prompt id. A refusal raises QueueError(exit_code=2) with the
        server's validation message."""
        body = json.dumps({"prompt": prompt, "client_id": self.client_id}).encode()
        status, answer = self.request("POST", "/prompt", body)
        try:
            data = json.loads(answer)
        except json.JSONDecodeError:
            data = {"error": answer.decode("utf-8", "replace")[:2000]}
        if status != 200 or "prompt_id" not in data:
            raise QueueError(f"{self.url} refused the prompt (HTTP {status}):\n"
                             f"{describe_refusal(data, prompt)}", exit_code=2)
        if data.get("node_errors"):
            raise QueueError(f"{self.url} queued only part of the prompt:\n"
                             f"{describe_refusal({'error': 'some outputs failed validation', **data}, prompt)}",
                             exit_code=2)
        return data["prompt_id"]

    def history(self, prompt_id: str) -> dict | None:
        return self.get_json(f"/history/{prompt_id}").get(prompt_id)

    def wait(self, prompt_id: str, timeout: float = 3600.0,
             on_event: Callable[[str, dict], None] | None = None) -> dict:
        """Follow a queued prompt until it ends; its /history entry (QueueError on failure)."""
        deadline = time.monotonic() + timeout
        ws = self.open_ws()
        last_poll = 0.0
        while time.monotonic() < deadline:
            done = False
            if ws is not None:
                try:
                    op, data = ws.recv(timeout=2.0)
                except TimeoutError:
                    op, data = 0, b""
                except (OSError, WebSocketClosed) as e:
                    self.ws, self.ws_failed, ws = None, f"lost: {e}", None
                    op, data = 0, b""
                if op == 1:
                    msg = json.loads(data)
                    kind, d = msg.get("type"), msg.get("data") or {}
                    if d.get("prompt_id") == prompt_id:
                        if on_event:
                            on_event(kind, d)
                        done = kind in ("execution_success", "execution_error",
                                        "execution_interrupted") or (
                            kind == "executing" and d.get("node") is None)
            else:
                time.sleep(0.25)
            now = time.monotonic()
            if done or now - last_poll > (5.0 if ws is not None else 0.5):
                last_poll = now
                entry = self._finished(prompt_id, settle=done)
                if entry is not None:
                    return entry
        raise QueueError(f"prompt {prompt_id} on {self.url} did not finish in {timeout:.0f} s")

    def _finished(self, prompt_id: str, settle: bool) -> dict | None:
        # the websocket says "done" a moment before the history entry is written
        for _ in range(40 if settle else 1):
            entry = self.history(prompt_id)
            if entry is not None:
                status = entry.get("status", {})
                if status.get("status_str") == "error":
                    raise QueueError(f"prompt {prompt_id} failed on {self.url}: "
                                     f"{describe_failure(status)}")
                if status.get("completed") or status.get("status_str") == "success":
                    return entry
            if settle:
                time.sleep(0.05)
        return None

    def download_outputs(self, entry: dict, prompt: dict, out_dir: Path,
                         types: tuple[str, ...] = ("output",)) -> list[Path]:
        """Download every file a history entry lists; named ``<node title>_<file name>``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for nid, outputs in entry.get("outputs", {}).items():
            title = _slug(node_title(prompt[nid]) if nid in prompt else nid)
            for items in outputs.values():
                if not isinstance(items, list):
                    continue
                for item in items:
                    if not (isinstance(item, dict) and "filename" in item
                            and item.get("type", "output") in types):
                        continue
                    q = urllib.parse.urlencode({"filename": item["filename"],
                                                "subfolder": item.get("subfolder", ""),
                                                "type": item.get("type", "output")})
                    status, data = self.request("GET", f"/view?{q}")
                    if status != 200:
                        raise QueueError(f"download of {item['filename']} failed: HTTP {status}")
                    path = out_dir / f"{title}_{Path(item['filename']).name}"
                    path.write_bytes(data)
                    files.append(path)
        return files

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "node"


# ------------------------------------------------------------------------------------------------
# jobs


@dataclass
class Job:
    """One prompt to run; filled in by :func:`run_jobs`."""

    prompt: dict
    out_dir: Path
    name: str = ""
    server: str = ""
    prompt_id: str = ""
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    exit_code: int = 0
    entry: dict | None = None


def run_job(server: ComfyServer, job: Job, timeout: float, search: Iterable[Path] = (),
            log: Callable[[str], None] | None = None, types: tuple[str, ...] = ("output",)) -> Job:
    """Upload local images, queue, follow, download; errors are stored on the job."""
    t0 = time.monotonic()
    job.server = server.url
    prompt = job.prompt

    def on_event(kind: str, d: dict) -> None:
        if log is None:
            return
        nid = d.get("node")
        title = node_title(prompt[nid]) if nid in prompt else nid
        if kind == "executing" and nid is not None:
            log(f"[{job.name}] {server.url}: running node {nid} ({title})")
        elif kind == "progress":
            log(f"[{job.name}] {server.url}: node {nid} ({title}) {d.get('value')}/{d.get('max')}")

    try:
        prompt = server.upload_local_images(job.prompt, search)
        server.open_ws()  # before queueing, so no message is missed
        job.prompt_id = server.queue(prompt)
        if log:
            how = "websocket" if server.ws is not None else f"polling /history ({server.ws_failed})"
            log(f"[{job.name}] queued {job.prompt_id} on {server.url}, following via {how}")
        job.entry = server.wait(job.prompt_id, timeout, on_event)
        job.files = server.download_outputs(job.entry, prompt, job.out_dir, types)
    except QueueError as e:
        job.error, job.exit_code = str(e), e.exit_code
    job.seconds = time.monotonic() - t0
    return job


def run_jobs(servers: list[ComfyServer], jobs: list[Job], timeout: float = 3600.0,
             search: Iterable[Path] = (), log: Callable[[str], None] | None = None,
             types: tuple[str, ...] = ("output",),
             on_done: Callable[[Job], None] | None = None) -> list[Job]:
    """Run jobs round-robin over the servers, one worker thread per server; ``on_done(job)`` is
    called (one at a time) as each job ends."""
    search = list(search)
    lock = threading.Lock()

    def locked_log(text: str) -> None:
        if log:
            with lock:
                log(text)

    def worker(server: ComfyServer, idx: list[int]) -> None:
        try:
            for i in idx:
                run_job(server, jobs[i], timeout, search, locked_log if log else None, types)
                if on_done:
                    with lock:
                        on_done(jobs[i])
        finally:
            server.close()

    threads = [threading.Thread(target=worker, args=(s, idx), daemon=True)
               for s, idx in zip(servers, assign_round_robin(len(jobs), len(servers)), strict=True)
               if idx]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return jobs


# ------------------------------------------------------------------------------------------------
# command line


def build_jobs(prompt: dict, out: Path, repeat: int, increment: list[str]) -> list[Job]:
    jobs = []
    for i in range(repeat):
        p = copy.deepcopy(prompt)
        for spec in increment:
            ref, _, name = spec.rpartition(".")
            nid = find_node(p, ref)
            cur = p[nid]["inputs"].get(name)
            if isinstance(cur, bool) or not isinstance(cur, int):
                raise QueueError(f"--increment {spec}: input is {cur!r}, not an integer")
            p[nid]["inputs"][name] = cur + i
        jobs.append(Job(p, out / f"job_{i:03d}" if repeat > 1 else out, name=f"job {i}"))
    return jobs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflow", help="path to an *_api.json, or a shipped name (lazydrag_flux)")
    ap.add_argument("--server", action="append", default=[],
                    help="ComfyUI URL (repeatable; jobs go round-robin). Default "
                         "http://127.0.0.1:8188")
    ap.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                    help="set an input by node id or title; VALUE '@file' reads a file")
    ap.add_argument("--out", default="out/queue", help="folder for downloaded outputs")
    ap.add_argument("--repeat", type=int, default=1, help="queue N copies")
    ap.add_argument("--increment", action="append", default=[], metavar="NODE.INPUT",
                    help="add the job index to this integer input (e.g. a seed)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per job")
    ap.add_argument("--temp", action="store_true", help="also download temp previews")
    ap.add_argument("--print-prompt", action="store_true",
                    help="print the final API prompt and exit without queueing")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--swap-test-loaders", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        wf = resolve_workflow(args.workflow)
        prompt = apply_sets(load_workflow(wf), args.set)
        if args.swap_test_loaders:
            prompt = swap_test_loaders(prompt)
        if args.print_prompt:
            print(json.dumps(prompt, indent=2))
            return 0
        if args.repeat < 1:
            raise QueueError("--repeat must be >= 1")
        jobs = build_jobs(prompt, Path(args.out), args.repeat, args.increment)
    except QueueError as e:
        say(f"error: {e}")
        return e.exit_code
    servers = [ComfyServer(u) for u in (args.server or ["http://127.0.0.1:8188"])]
    types = ("output", "temp") if args.temp else ("output",)
    run_jobs(servers, jobs, args.timeout, search=[wf.parent, EXAMPLE_INPUTS],
             log=None if args.quiet else say, types=types)
    code = 0
    for job in jobs:
        if job.error:
            say(f"[{job.name}] FAILED on {job.server} after {job.seconds:.1f} s: {job.error}")
            code = code or job.exit_code
        else:
            say(f"[{job.name}] done on {job.server} in {job.seconds:.1f} s: "
                f"{len(job.files)} file(s) in {job.out_dir}")
            for f in job.files:
                print(f)
    return code


if __name__ == "__main__":
    sys.exit(main())
