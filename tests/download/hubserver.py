"""A stand-in for the Hugging Face hub on 127.0.0.1, for the download tests (stdlib only).

Serves folders as hub repositories in the hub's URL layout:
  GET /<org>/<name>/resolve/<rev>/<path>          file content, Range requests (206),
                                                  ETag, X-Linked-Etag / X-Linked-Size for
                                                  LFS files (the SHA-256), X-Repo-Commit
  GET /api/models/<org>/<name>/tree/<rev>?recursive=true
                                                  [{"type": "file", "path", "size", "oid":
                                                  git blob SHA-1, "lfs": {"oid": SHA-256,
                                                  "size", "pointerSize"}}], paginated with a
                                                  Link: <...>; rel="next" header
  GET /cdn/<sha256>                               LFS content behind --redirect
Files that are git link stubs (a small text file holding a relative path, as in the goldens'
tiny-karlo-variations) are served as the file they point to, like the hub serves a repo.

Misbehaviour on demand, for the tests:
  --drop P         each file response (> 4 KiB of body) is cut after a random number of
                   bytes with probability P (connection closed), at most --max-drops times
  --corrupt PATH   the first full response of repo path PATH (any repo) has one byte flipped
                   (repeatable option; PATH:N flips the first N responses)
  --throttle BPS   send file bodies at about BPS bytes per second
  --no-range       ignore Range headers (always 200 and the whole file)
  --redirect       answer LFS files with 302 to /cdn/<sha256>, as the hub does
  --page-size N    tree API pages of N entries
Every request is appended to --log as a JSON line {method, path, range, status, sent}.
The chosen port is written to --port-file once the server listens. --hash-cache FILE keeps
the files' hashes between servers of one test (by path, size and mtime).
"""
import argparse
import hashlib
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LFS_SUFFIXES = (".safetensors", ".bin", ".msgpack", ".h5", ".ckpt", ".pt", ".pth", ".onnx")
STUB_MAX = 1024


def resolve_stub(path):
    """Follows git link stubs (and real links): returns the path of the real file."""
    for _ in range(8):
        real = os.path.realpath(path)
        size = os.path.getsize(real)
        if size >= STUB_MAX or size == 0:
            return real
        with open(real, "rb") as f:
            data = f.read().rstrip(b"\r\n")
        if data.startswith(b"/") or any(c < 0x20 or c in b'{"#' for c in data):
            return real
        target = os.path.join(os.path.dirname(real), data.decode("utf-8", "replace"))
        if not os.path.isfile(target):
            return real
        path = target
    return os.path.realpath(path)


def file_hashes(real, lfs, cache):
    """(size, git blob SHA-1, SHA-256 or None), remembered in `cache` by path, size, mtime."""
    st = os.stat(real)
    key = "%s|%d|%d|%d" % (real, st.st_size, st.st_mtime_ns, lfs)
    if key not in cache:
        with open(real, "rb") as f:
            data = f.read()
        oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        sha = hashlib.sha256(data).hexdigest() if lfs else None
        cache[key] = [len(data), oid, sha]
    return cache[key]


class Repo:
    def __init__(self, name, root, cache):
        self.name = name
        self.root = root
        self.files = {}  # repo path -> dict(real, size, oid, sha256|None)
        for d, _, names in os.walk(root, followlinks=True):
            for n in sorted(names):
                full = os.path.join(d, n)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                real = resolve_stub(full)
                size, oid, sha = file_hashes(real, n.endswith(LFS_SUFFIXES), cache)
                self.files[rel] = {"real": real, "size": size, "oid": oid, "sha256": sha}
        self.commit = hashlib.sha1(name.encode()).hexdigest()


class State:
    def __init__(self, args):
        self.args = args
        self.repos = {}
        cache = {}
        if args.hash_cache and os.path.exists(args.hash_cache):
            with open(args.hash_cache) as f:
                cache = json.load(f)
        for spec in args.repo:
            name, root = spec.split("=", 1)
            self.repos[name] = Repo(name, root, cache)
        if args.hash_cache:
            tmp = args.hash_cache + ".%d" % os.getpid()
            with open(tmp, "w") as f:
                json.dump(cache, f)
            os.replace(tmp, args.hash_cache)
        self.by_sha = {}
        for r in self.repos.values():
            for p, f in r.files.items():
                if f["sha256"]:
                    self.by_sha[f["sha256"]] = (r, p)
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)
        self.drops = 0
        self.corrupt = {}
        for c in args.corrupt:
            path, _, n = c.partition(":")
            self.corrupt[path] = int(n) if n else 1
        self.log = open(args.log, "a") if args.log else None

    def record(self, **kw):
        if self.log:
            with self.lock:
                self.log.write(json.dumps(kw) + "\n")
                self.log.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "hubserver/1"

    def log_message(self, fmt, *a):  # quiet: the JSON log is the record
        pass

    @property
    def st(self):
        return self.server.state

    def fail(self, code, msg):
        body = json.dumps({"error": msg}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.st.record(method=self.command, path=self.path, range=None, status=code, sent=0)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        query = urllib.parse.parse_qs(url.query)
        if len(parts) >= 5 and parts[0] == "api" and parts[1] == "models" and parts[4] == "tree":
            return self.tree(parts[2] + "/" + parts[3], parts[5:], query)
        if len(parts) >= 2 and parts[0] == "cdn":
            hit = self.st.by_sha.get(parts[1])
            if not hit:
                return self.fail(404, "no such object")
            return self.send_file(hit[0], hit[1], redirected=True)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self.st.repos.get(parts[0] + "/" + parts[1])
            if not repo:
                return self.fail(404, "Repository not found")
            path = "/".join(parts[4:])
            if path not in repo.files:
                return self.fail(404, "Entry not found")
            return self.send_file(repo, path, redirected=False)
        return self.fail(404, "not a hub URL")

    def tree(self, name, sub, query):
        repo = self.st.repos.get(name)
        if not repo:
            return self.fail(404, "Repository not found")
        prefix = "/".join(sub[1:]) if len(sub) > 1 else ""
        entries = []
        for p in sorted(repo.files):
            if prefix and not p.startswith(prefix + "/"):
                continue
            f = repo.files[p]
            e = {"type": "file", "oid": f["oid"], "size": f["size"], "path": p}
            if f["sha256"]:
                e["lfs"] = {"oid": f["sha256"], "size": f["size"], "pointerSize": 134}
            entries.append(e)
        start = int(query.get("cursor", ["0"])[0])
        size = self.st.args.page_size or len(entries) or 1
        page = entries[start:start + size]
        body = json.dumps(page).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if start + size < len(entries):
            q = dict((k, v[0]) for k, v in query.items())
            q["cursor"] = str(start + size)
            host = "http://%s:%d" % self.server.server_address[:2]
            link = "%s%s?%s" % (host, urllib.parse.urlsplit(self.path).path,
                                urllib.parse.urlencode(q))
            self.send_header("Link", '<%s>; rel="next"' % link)
        self.end_headers()
        self.wfile.write(body)
        self.st.record(method="GET", path=self.path, range=None, status=200, sent=len(body))

    def send_file(self, repo, path, redirected):
        f = repo.files[path]
        args = self.st.args
        if f["sha256"] and args.redirect and not redirected:
            self.send_response(302)
            self.send_header("Location", "/cdn/%s" % f["sha256"])
            self.send_header("X-Linked-Etag", '"%s"' % f["sha256"])
            self.send_header("X-Linked-Size", str(f["size"]))
            self.send_header("X-Repo-Commit", repo.commit)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.st.record(method=self.command, path=self.path, range=None, status=302, sent=0)
            return
        size = f["size"]
        rng = self.headers.get("Range")
        begin, end, status = 0, size - 1, 200
        if rng and not args.no_range:
            spec = rng.strip()
            if not spec.startswith("bytes=") or "," in spec:
                return self.fail(400, "bad range")
            a, _, b = spec[6:].partition("-")
            begin = int(a)
            end = min(int(b), size - 1) if b else size - 1
            if begin >= size or begin > end:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.st.record(method=self.command, path=self.path, range=rng, status=416,
                               sent=0)
                return
            status = 206
        length = end - begin + 1
        with open(f["real"], "rb") as fh:
            fh.seek(begin)
            body = bytearray(fh.read(length))
        with self.st.lock:
            if status == 200 and self.st.corrupt.get(path, 0) > 0 and length > 0:
                self.st.corrupt[path] -= 1
                body[length // 2] ^= 0x5A
            cut = None
            if (args.drop > 0 and length > 4096 and self.st.drops < args.max_drops and
                    self.st.rng.random() < args.drop):
                cut = self.st.rng.randrange(1, length)
                self.st.drops += 1
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (begin, end, size))
        etag = f["sha256"] or f["oid"]
        self.send_header("ETag", '"%s"' % etag)
        if f["sha256"]:
            self.send_header("X-Linked-Etag", '"%s"' % f["sha256"])
            self.send_header("X-Linked-Size", str(size))
        self.send_header("X-Repo-Commit", repo.commit)
        self.end_headers()
        if self.command == "HEAD":
            return
        sent = 0
        todo = length if cut is None else cut
        chunk = 65536 if args.throttle else 1 << 20
        t0 = time.monotonic()
        try:
            while sent < todo:
                n = min(chunk, todo - sent)
                self.wfile.write(body[sent:sent + n])
                sent += n
                if args.throttle:
                    ahead = sent / args.throttle - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.st.record(method=self.command, path=self.path, range=rng, status=status,
                       sent=sent, cut=cut is not None)
        if cut is not None:
            # drop the connection in the middle of the body
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", action="append", default=[], help="org/name=DIR")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--drop", type=float, default=0.0)
    ap.add_argument("--max-drops", type=int, default=1000)
    ap.add_argument("--corrupt", action="append", default=[])
    ap.add_argument("--throttle", type=float, default=0.0)
    ap.add_argument("--no-range", action="store_true")
    ap.add_argument("--redirect", action="store_true")
    ap.add_argument("--page-size", type=int, default=0)
    ap.add_argument("--hash-cache", help="JSON file remembering file hashes between servers")
    ap.add_argument("--lifetime", type=float, default=600.0,
                    help="exit after this many seconds whatever happens")
    args = ap.parse_args()
    state = State(args)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.state = state
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.replace(tmp, args.port_file)
    # never outlive a test that forgot us
    threading.Timer(args.lifetime, lambda: os._exit(0)).start()
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
