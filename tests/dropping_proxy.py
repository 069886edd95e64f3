"""An HTTP proxy in front of a tracking server that forwards a chosen request and then closes the connection
without its answer: what a client sees when the server dies after the write and before it answered. MLflow's
HTTP client sends such a request again (its retries cover POST), so the server performs it twice."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable


class DroppingProxy:
    """Listens on 127.0.0.1:``port``; forwards every request to ``upstream_port``. When ``drop(method, path,
    body)`` is true for a request, its answer is thrown away and the connection closed (``dropped`` lists
    the paths). Requests are read with their Content-Length (MLflow's client sends no chunked bodies)."""

    def __init__(self, upstream_port: int, drop: Callable[[str, str, bytes], bool]) -> None:
        self.upstream_port, self.drop = upstream_port, drop
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.dropped: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while self._one(conn, reader):
                pass
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    def _one(self, conn: socket.socket, reader) -> bool:
        """Serve one request of a kept-alive connection; False once it is closed."""
        line = reader.readline()
        if not line:
            return False
        method, path, _ = line.decode().split(" ", 2)
        headers = {}
        while (header := reader.readline().decode()).strip():
            key, value = header.split(":", 1)
            headers[key.strip()] = value.strip()
        body = reader.read(int(headers.get("Content-Length", 0) or 0))
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=120)
        upstream.request(
            method, path, body=body, headers={k: v for k, v in headers.items() if k.lower() != "connection"}
        )
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        if self.drop(method, path, body):
            self.dropped.append(path)
            conn.shutdown(socket.SHUT_RDWR)
            return False
        head = [f"HTTP/1.1 {answer.status} {answer.reason}"]
        head += [
            f"{k}: {v}"
            for k, v in answer.getheaders()
            if k.lower() not in ("transfer-encoding", "content-length", "connection")
        ]
        head.append(f"Content-Length: {len(data)}")
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        return True

    def close(self) -> None:
        self.sock.close()
