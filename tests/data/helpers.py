"""What the data tests share: IDX files written by hand, a local HTTP mirror whose behaviour a
test sets, and standardising by a split's own statistics."""

from __future__ import annotations

import gzip
import struct
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np


def standardise(s, x):
    return (x.astype(np.float32) - s.mean) / s.std


def write_idx(path: Path, array: np.ndarray, *, gz: bool, type_code: int = 0x08) -> Path:
    """Write an IDX file by hand, independently of the reader under test."""
    header = struct.pack(">HBB", 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if gz:
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


class Mirror:
    """A real HTTP server on localhost whose behaviour a test sets: serve `files`, trickle,
    stream without end, or fail; it counts the requests it gets."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.mode, self.requests = files, "serve", 0
        self.delay = 0.0
        mirror = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                mirror.requests += 1
                body = mirror.files.get(self.path.rsplit("/", 1)[-1])
                time.sleep(mirror.delay)
                if mirror.mode == "fail" or body is None:
                    self.send_error(500 if body is not None else 404)
                    return
                self.send_response(200)
                if mirror.mode == "announce_more":
                    self.send_header("Content-Length", str(10 * len(body)))
                elif mirror.mode == "serve":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if mirror.mode == "serve":
                        self.wfile.write(body)
                    elif mirror.mode == "trickle":   # one byte every 50 ms, forever
                        while True:
                            self.wfile.write(b"\x00")
                            self.wfile.flush()
                            time.sleep(0.05)
                    elif mirror.mode == "endless":   # as fast as it can, forever
                        while True:
                            self.wfile.write(b"\x00" * 65536)
                except OSError:
                    pass  # the client hung up, as it should

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
