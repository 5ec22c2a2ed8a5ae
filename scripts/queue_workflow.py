#!/usr/bin/env python3
"""Queue an API-format workflow on one or several ComfyUI servers and download what it saves.

    python -m scripts.queue_workflow lazydrag_flux \\
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
* Progress is followed over the server's websocket (the pack's client, ``tools/comfy_client.py``,
  on ``aiohttp``; if the websocket cannot be opened, ``/history`` is polled instead). Files listed
  in the outputs (``images`` etc. of type ``output``; ``--temp`` adds previews) are downloaded
  into ``--out``.
* Exit status: 0 when every job succeeded; 2 when the server refused the prompt (its validation
  message is printed, naming the node and input), 1 for execution errors, time-outs or bad
  arguments.

Needs ``aiohttp`` (a ComfyUI dependency). The functions are importable
(``scripts/dragbench_batch.py`` uses them).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from tools.comfy_client import ComfyClient, ComfyError  # noqa: E402

WORKFLOWS = ROOT / "workflows"
API_WORKFLOWS = WORKFLOWS / "api"  # the shipped API twins (workflows/ itself holds the UI files)
EXAMPLE_INPUTS = WORKFLOWS / "example_inputs"
IMAGE_LOADERS = {"LoadImage", "LoadImageMask", "LoadImageOutput"}
# hidden --swap-test-loaders (tests only): real loaders -> the tiny test loaders. The mapping is
# tests/workflow_tools.py's LOADER_SWAP when the checkout has it; this is the fallback.
TEST_LOADER_SWAP = {"UNETLoader": "FluxDragTestTinyUNET", "DualCLIPLoader": "FluxDragTestTinyCLIP",
                    "VAELoader": "FluxDragTestTinyVAE"}


#: what goes wrong; ``exit_code`` 2 = refused by the server's validation, 1 = other
QueueError = ComfyError


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


# ------------------------------------------------------------------------------------------------
# one server


class ComfyServer(ComfyClient):
    """The client of one server, with the script's refusal messages (node titles) and its
    upload / download of local files."""

    def describe_refusal(self, answer: dict, prompt: dict) -> str:
        return describe_refusal(answer, prompt)

    def upload_local_images(self, prompt: dict, search: Iterable[Path] = ()) -> dict:
        """A copy whose LoadImage values naming local files point to uploaded copies."""
        out = copy.deepcopy(prompt)
        for n in out.values():
            if n["class_type"] in IMAGE_LOADERS:
                p = local_image(n.get("inputs", {}).get("image"), search)
                if p is not None:
                    n["inputs"]["image"] = self.upload_image(p, overwrite=False)
        return out

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
                    data = self.view(item["filename"], item.get("subfolder", ""), item.get("type", "output"))
                    path = out_dir / f"{title}_{Path(item['filename']).name}"
                    path.write_bytes(data)
                    files.append(path)
        return files



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
    texts: list[str] = field(default_factory=list)  # nodes' progress texts (warnings among them)


def run_job(server: ComfyServer, job: Job, timeout: float, search: Iterable[Path] = (),
            log: Callable[[str], None] | None = None, types: tuple[str, ...] = ("output",)) -> Job:
    """Upload local images, queue, follow, download; errors are stored on the job."""
    t0 = time.monotonic()
    job.server = server.url
    prompt = job.prompt

    def on_event(kind: str, d: dict) -> None:
        if kind == "progress_text" and d.get("text"):
            job.texts.append(str(d["text"]))
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
        server.open_progress()  # before queueing, so no message is missed
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
