"""The client decodes ComfyUI's binary progress-text frames (server.send_progress_text:
event type 3 (u32 BE), node-id length (u32 BE), node id, UTF-8 text)."""
import struct

from tools.comfy_client import decode_progress_text


def test_progress_text_frame():
    text = "FluxDrag Correspondence Map: input 'mask' is 128×128 but the image is 256×256"
    frame = struct.pack(">I", 3) + struct.pack(">I", 2) + b"12" + text.encode("utf-8")
    assert decode_progress_text(frame) == {"node": "12", "text": text}


def test_other_binary_events_are_not_text():
    preview = struct.pack(">I", 1) + struct.pack(">I", 2) + b"\x89PNG...."
    assert decode_progress_text(preview) is None
    assert decode_progress_text(b"\x00\x00") is None
