"""A real HTTP server on 127.0.0.1 standing in for the places the authors publish their models:

    the Hugging Face Hub (point HF_ENDPOINT at `url`): a dataset's file list
        GET  /api/datasets/{repo}/tree/{revision}[/path]  -> JSON [{type, path, size, oid}]
        HEAD|GET /datasets/{repo}/resolve/{revision}/{path} -> the file, with X-Repo-Commit and ETag
    a plain file server (GANgealing's; GANGEALING_RELEASE_URL = url + "/gangealing/{name}.pt")
        GET /gangealing/{name}.pt
    Google Drive's stand-in (COCOSNET_DRIVE_URL = url + "/drive")
        GET /drive/folders/{id} -> JSON [{id, path}],  GET /drive/files/{id}

Faults, per URL path: "404"; "drop" (the headers promise every byte, half arrive, the connection
closes); "stall" (half arrive, then the server waits until `release()` or the test ends). Every
GET of a file is logged in `downloads` (URL paths), so a test sees what was fetched and how often.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class ReleaseServer:
    def __init__(self):
        self.files: dict[str, bytes] = {}  # URL path -> bytes
        self.datasets: dict[str, dict[str, bytes]] = {}  # repo id -> {path in repo: bytes}
        self.faults: dict[str, str] = {}
        self.downloads: list[str] = []
        self.half_sent = threading.Event()
        self._go_on = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                server._answer(self, head=True)

            def do_GET(self):
                server._answer(self, head=False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ what it serves
    def add_dataset_file(self, repo: str, path: str, data: bytes) -> None:
        self.datasets.setdefault(repo, {})[path] = data

    def add_drive_folder(self, folder_id: str, files: dict[str, bytes]) -> None:
        """files: {path in the folder: bytes}; file ids are made from the paths."""
        listing = []
        for path, data in files.items():
            file_id = "f" + hashlib.sha1(f"{folder_id}/{path}".encode()).hexdigest()[:16]
            self.files[f"/drive/files/{file_id}"] = data
            listing.append(dict(id=file_id, path=path))
        self.files[f"/drive/folders/{folder_id}"] = json.dumps(listing).encode()

    def release(self) -> None:
        self._go_on.set()

    def close(self) -> None:
        self._go_on.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------------ answering
    def _answer(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(urlparse(handler.path).path)
        data, headers = self._find(path)
        if data is None or self.faults.get(path) == "404":
            handler.send_response(404)
            handler.send_header("Content-Type", "application/json")
            body = b'{"error": "Entry not found"}'
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if not head:
                handler.wfile.write(body)
            return
        handler.send_response(200)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if head:
            return
        fault = self.faults.get(path)
        if "/tree/" not in path and not path.startswith("/drive/folders/"):
            self.downloads.append(path)
        if fault in ("drop", "stall"):
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            self.half_sent.set()
            if fault == "stall":
                self._go_on.wait(timeout=60)
            handler.close_connection = True
            return
        handler.wfile.write(data)

    def _find(self, path: str):
        if path.startswith("/api/datasets/"):  # /api/datasets/{owner}/{name}/tree/{revision}[/sub]
            parts = path.split("/")
            repo = "/".join(parts[3:5])
            if repo not in self.datasets or parts[5:6] != ["tree"]:
                return None, {}
            sub = "/".join(parts[7:])
            listing = [
                dict(type="file", path=p, size=len(d), oid=hashlib.sha1(d).hexdigest())
                for p, d in sorted(self.datasets[repo].items())
                if p.startswith(sub)
            ]
            return json.dumps(listing).encode(), {"Content-Type": "application/json"}
        if path.startswith("/datasets/"):  # /datasets/{owner}/{name}/resolve/{revision}/{path}
            parts = path.split("/")
            repo, file = "/".join(parts[2:4]), "/".join(parts[6:])
            data = self.datasets.get(repo, {}).get(file)
            if data is None:
                return None, {}
            return data, {
                "X-Repo-Commit": COMMIT,
                "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                "Content-Type": "application/octet-stream",
            }
        data = self.files.get(path)
        return data, {"Content-Type": "application/octet-stream"}
