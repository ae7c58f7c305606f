"""A real HTTP server on 127.0.0.1 for tests: serves a directory, counts requests, fails on cue."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

FaultKind = Literal["status", "stall_before_headers", "stall_in_body", "corrupt"]
_STALL_BODY_PREFIX_BYTES = 1024


@dataclass
class _Fault:
    kind: FaultKind
    status: int = 0
    remaining: int | None = None  # answers left before the path is served normally; None: forever


class LocalHTTPServer:
    """ThreadingHTTPServer on 127.0.0.1, an ephemeral port, serving `root` read-only.

    Faults are set per URL path ("/v1.22.0/keadm-....tar.gz"): a status code (404 forever, or
    500 N times then success), a stall before any byte of the answer, a stall after the headers
    and the first KiB of the body, or the file served with flipped bytes at the same length.
    Stalled handlers are released by `close()`.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: Counter[str] = Counter()
        self._faults: dict[str, _Fault] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail_with(self, path: str, status: int, times: int | None = None) -> None:
        """Answer `path` with `status` `times` times (None: always), then serve it normally."""
        self._set_fault(path, _Fault("status", status=status, remaining=times))

    def stall(self, path: str, *, in_body: bool) -> None:
        """Never finish answering `path`: before the headers, or after a first slice of body."""
        self._set_fault(path, _Fault("stall_in_body" if in_body else "stall_before_headers"))

    def corrupt(self, path: str) -> None:
        """Serve `path` with every byte of its first KiB inverted (same length)."""
        self._set_fault(path, _Fault("corrupt"))

    def close(self) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> LocalHTTPServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _set_fault(self, path: str, fault: _Fault) -> None:
        with self._lock:
            self._faults[path] = fault

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            self.requests[path] += 1
            fault = self._faults.get(path)
            if fault is None or fault.remaining is None:
                return fault
            if fault.remaining <= 0:
                del self._faults[path]
                return None
            fault.remaining -= 1
            return fault

    def _handler_class(self) -> type[SimpleHTTPRequestHandler]:
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(server.root), **kwargs)

            def do_GET(self) -> None:
                path = unquote(urlsplit(self.path).path)
                fault = server._take_fault(path)
                if fault is None:
                    super().do_GET()
                elif fault.kind == "status":
                    self.send_error(fault.status)
                elif fault.kind == "stall_before_headers":
                    server._closing.wait()
                else:
                    self._send_faulty_body(path, fault.kind)

            def _send_faulty_body(self, path: str, kind: FaultKind) -> None:
                body = bytearray((server.root / path.lstrip("/")).read_bytes())
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if kind == "stall_in_body":
                    self.wfile.write(body[:_STALL_BODY_PREFIX_BYTES])
                    self.wfile.flush()
                    server._closing.wait()
                    return
                for index in range(min(len(body), _STALL_BODY_PREFIX_BYTES)):
                    body[index] ^= 0xFF
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: pytest output is for failures, and requests are counted instead."""

        return Handler
