"""What the loopback test servers share (``fake_openai.py``, ``fake_github.py``): a scripted
reply, a JSON request handler, and a threaded HTTP server on 127.0.0.1 started with ``with``."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """What the server answers: a status, a body (a dict or list is sent as JSON, a str or bytes
    as text), headers; ``drop`` closes the connection without an answer."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


def named(name: str, fn: Callable) -> Callable:
    """``fn`` under ``name`` (what the server records as the request's behaviour)."""
    fn.__name__ = name
    return fn


class JSONHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1, no per-request log line, a JSON body reader and :meth:`send_reply`."""

    protocol_version = "HTTP/1.1"
    text_content_type = "text/plain; charset=utf-8"

    def log_message(self, format, *args):
        pass

    def read_json(self) -> Any:
        """The request body as JSON, or None when it is not JSON."""
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def lower_headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def send_reply(self, seen, reply: Reply) -> None:
        """Send ``reply`` and record its status on ``seen`` (0 stays for a dropped connection)."""
        if reply.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        seen.status = reply.status
        if isinstance(reply.body, (dict, list)):
            payload = json.dumps(reply.body, ensure_ascii=False).encode()
            content_type = "application/json; charset=utf-8"
        else:
            payload = reply.body.encode() if isinstance(reply.body, str) else reply.body or b""
            content_type = self.text_content_type
        try:
            self.send_response(reply.status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:  # the client gave up (read timeout) and closed the socket
            self.close_connection = True


class LoopbackServer:
    """A :class:`ThreadingHTTPServer` on 127.0.0.1 (a free port) in a daemon thread. Subclasses
    set ``handler`` (a :class:`JSONHandler` subclass) and ``handler_attr``, the name under which
    the handler reaches this object."""

    handler: type[JSONHandler]
    handler_attr: str

    _httpd: ThreadingHTTPServer | None = None

    def start(self):
        handler = type("Handler", (self.handler,), {self.handler_attr: self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not running"
        return self._httpd.server_address[1]
