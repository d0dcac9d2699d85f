"""A real HTTP server on 127.0.0.1 serving in-memory files, with knobs to misbehave."""

import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Site:
    """In-memory files with ETag / Last-Modified, plus knobs to make the server misbehave."""

    def __init__(self) -> None:
        self.base = ""
        self.files: dict[str, tuple[bytes, str, str]] = {}
        self.versions = 0
        self.log: list[tuple[str, str, dict[str, str]]] = []
        # Path -> body bytes the next GET sends before the server drops the connection.
        self.drop_after: dict[str, int] = {}
        # Path -> body bytes the next GET of a longer body sends, announcing that shorter
        # length as its Content-Length (a proxy or server that cuts a file short silently).
        self.short_get: dict[str, int] = {}
        # (method, path) -> statuses to answer the next requests with, in order.
        self.fail_next: dict[tuple[str, str], list[int]] = {}
        self.refuse_head = False
        self.head_without_length = False
        # Run once at the start of the next GET (to change a file between HEAD and GET).
        self.on_get: Callable[[], None] | None = None
        # A GET of a path ending in "/" lists the files under it as HTML links, as GEO does.
        self.listings = True

    def put(self, path: str, data: bytes) -> str:
        self.versions += 1
        etag = f'"v{self.versions}-{hashlib.md5(data).hexdigest()[:8]}"'
        modified = formatdate(1_600_000_000 + self.versions, usegmt=True)
        self.files[path] = (data, etag, modified)
        return self.base + path

    def requests(self, method: str) -> list[dict[str, str]]:
        return [headers for m, _, headers in self.log if m == method]

    def remove(self, path: str) -> None:
        self.files.pop(path, None)

    def listing(self, prefix: str) -> bytes | None:
        """An HTML index of the files directly under ``prefix`` (None when there are none)."""
        names = sorted(
            p[len(prefix) :]
            for p in self.files
            if p.startswith(prefix) and "/" not in p[len(prefix) :]
        )
        if not names:
            return None
        links = "".join(f'<a href="{n}">{n}</a>\n' for n in names)
        return f"<html><body><pre>{links}</pre></body></html>".encode()


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        def _serve(self, head: bool) -> None:
            site.log.append((self.command, self.path, dict(self.headers)))
            if head and site.refuse_head:
                self.send_error(405)
                return
            if not head and site.on_get is not None:
                hook, site.on_get = site.on_get, None
                hook()
            failures = site.fail_next.get((self.command, self.path))
            if failures:
                self.send_error(failures.pop(0))
                return
            if self.path.endswith("/") and site.listings and self.path not in site.files:
                index = site.listing(self.path)
                if index is not None:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(index)))
                    self.end_headers()
                    if not head:
                        self.wfile.write(index)
                    return
            if self.path not in site.files:
                self.send_error(404)
                return
            data, etag, modified = site.files[self.path]
            start, status = 0, 200
            wanted = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if wanted and if_range in (None, etag, modified):
                first, last = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted).groups()
                start = int(first)
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = data[: int(last) + 1] if last else data
                status = 206
            body = data[start:]
            if not head and len(body) > site.short_get.get(self.path, len(body)):
                body = body[: site.short_get.pop(self.path)]
            self.send_response(status)
            if not (head and site.head_without_length):
                self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header(
                    "Content-Range",
                    f"bytes {start}-{len(data) - 1}/{len(site.files[self.path][0])}",
                )
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", modified)
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if head:
                return
            cut = site.drop_after.pop(self.path, None)
            self.wfile.write(body if cut is None else body[:cut])

    return Handler


@contextmanager
def serving(site: Site) -> Iterator[Site]:
    """Serve ``site`` on a free loopback port for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
