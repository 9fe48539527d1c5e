"""A loopback HTTP proxy in front of moto's S3 server that makes chosen objects look as AWS sends them.

moto returns every object's MD5 as its ETag, whatever its encryption; AWS does not for SSE-KMS
and SSE-C. The proxy forwards each read (GET, HEAD) unchanged and rewrites the responses for the objects
in `rewrites`: their ETag (in their own headers and in bucket listings), their encryption
header, and, to stand for corruption on the way, one byte of their body.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

# Hop-by-hop headers, the length (recomputed once a body is rewritten) and the two headers
# BaseHTTPRequestHandler sends itself.
NOT_RELAYED = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


@dataclass(frozen=True)
class Rewrite:
    etag: str | None = None  # replaces the object's ETag (no quotes)
    encryption: str | None = None  # sent as x-amz-server-side-encryption
    flip_last_byte: bool = False


class S3RewritingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.rewrites: dict[tuple[str, str], Rewrite] = {}  # (bucket, key) -> how its responses change
        self.gets: Counter[tuple[str, str]] = Counter()  # object downloads seen, by (bucket, key)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> S3RewritingProxy:
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.server.shutdown()
        self.server.server_close()

    def forward(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            connection.request(method, path, headers=headers)
            reply = connection.getresponse()
            status, reply_headers, body = reply.status, reply.getheaders(), reply.read()
        finally:
            connection.close()
        bucket, _, key = unquote(urlsplit(path).path).lstrip("/").partition("/")
        if method == "GET" and key:
            self.gets[(bucket, key)] += 1
        if (rewrite := self.rewrites.get((bucket, key))) is not None:
            reply_headers, body = _rewrite_object(rewrite, reply_headers, body, method)
        elif not key and body:
            body = self._rewrite_listing(bucket, body)
        return status, reply_headers, body

    def _rewrite_listing(self, bucket: str, body: bytes) -> bytes:
        text = body.decode()
        for (listed_bucket, key), rewrite in self.rewrites.items():
            if listed_bucket == bucket and rewrite.etag:
                block = re.compile(rf"(<Contents>(?:(?!</Contents>).)*?<Key>{re.escape(escape(key))}</Key>.*?</Contents>)", re.S)
                etag = f"<ETag>&quot;{rewrite.etag}&quot;</ETag>"
                text = block.sub(lambda match, etag=etag: re.sub(r"<ETag>[^<]*</ETag>", etag, match[1]), text)
        return text.encode()


def _rewrite_object(rewrite: Rewrite, headers: list[tuple[str, str]], body: bytes, method: str):
    headers = [(name, value) for name, value in headers if name.lower() != "x-amz-server-side-encryption" or not rewrite.encryption]
    if rewrite.encryption:
        headers.append(("x-amz-server-side-encryption", rewrite.encryption))
    if rewrite.etag:
        headers = [(name, f'"{rewrite.etag}"' if name.lower() == "etag" else value) for name, value in headers]
    if rewrite.flip_last_byte and method == "GET" and body:
        body = body[:-1] + bytes([body[-1] ^ 0x01])
    return headers, body


def _handler(proxy: S3RewritingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self) -> None:
            headers = {name: value for name, value in self.headers.items() if name.lower() not in NOT_RELAYED}
            status, reply_headers, body = proxy.forward(self.command, self.path, headers)
            self.send_response(status)
            for name, value in reply_headers:
                if name.lower() not in NOT_RELAYED:
                    self.send_header(name, value)
            length = dict((name.lower(), value) for name, value in reply_headers).get("content-length", "0")
            self.send_header("Content-Length", length if self.command == "HEAD" else str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _relay  # the sync only reads

        def log_message(self, *_) -> None:
            pass

    return Handler
