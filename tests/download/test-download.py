"""Tests of `unclip download`, `unclip find-model` and `unclip convert` (stdlib only).

    test-download.py UNCLIP_EXE SCENARIO      (golden root from $UNCLIP_GOLDENS)

Scenarios (each a meson test of suite 'download'):
  basic     the Karlo plan from a local stand-in of the hub (hubserver.py: tree API pages,
            LFS redirects) into a fresh folder: every file identical to its source, the image
            encoder extracted by range requests from a CLIP-like file with a > 64 KiB header
            equal to the golden image encoder tensor for tensor, model_index.json with all 12
            components, the engine's vision tower on it within 1e-4 of the goldens; a second
            run keeps every file and fetches no file body again
  faults    connections dropped mid-file (resume with Range until complete) and corrupted
            bytes in a weight file and a tokenizer file (hash mismatch, fetched again)
  errors    a server that is down, a mirror missing a file, a server that ignores Range
            (extraction refused), an unknown model name: clear messages, exit 1/2, no file
            under a final name
  kill      the client killed at random points of a throttled download and restarted: the
            final files are identical to the source, and no final name ever holds a partial
            file
  convert   fp16 copies of the golden tiny models (one of them made of git link stubs): half
            the weight bytes, F16 tensors, configs identical; the text and vision towers on
            the copies within 5e-3 of the goldens (and not equal to the fp32 results)
  hubcache  a Hugging Face hub cache (blobs + snapshot symlinks + refs/main) built from the
            golden tiny model; the model search order (given folder, UNCLIP_MODEL, GIMP
            models folder, hub cache, shipped default) and its report; the engine's text
            tower on the cache snapshot within 1e-4 of the goldens
"""
import array
import hashlib
import json
import math
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXE = os.path.abspath(sys.argv[1])
SCENARIO = sys.argv[2]
GOLDENS = os.environ.get("UNCLIP_GOLDENS")
if not GOLDENS:
    print("UNCLIP_GOLDENS is not set")
    sys.exit(77)  # meson: skipped
MODELS = os.path.join(GOLDENS, "models")
T2I = os.path.join(MODELS, "tiny-karlo")
VAR = os.path.join(MODELS, "tiny-karlo-variations")

failures = 0
checks = 0


def check(cond, what):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what)
    return cond


# ---- files ----------------------------------------------------------------------------------

sys.path.insert(0, HERE)
import hubserver  # noqa: E402  (resolve_stub)


def resolve(path):
    """The real file behind a git link stub (see hubserver.resolve_stub)."""
    return hubserver.resolve_stub(path)


def read_bytes(path):
    with open(resolve(path), "rb") as f:
        return f.read()


def st_read(path):
    """{name: (dtype, shape, bytes)}, metadata."""
    b = read_bytes(path)
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for k, v in h.items():
        s, e = v["data_offsets"]
        out[k] = (v["dtype"], v["shape"], b[base + s:base + e])
    return out, meta


def st_write(path, tensors, meta=None):
    """tensors: {name: (dtype, shape, bytes)} written in name order (the hub writer's)."""
    header = {}
    if meta:
        header["__metadata__"] = meta
    off = 0
    names = sorted(tensors)
    for k in names:
        dt, shape, data = tensors[k]
        header[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for k in names:
            f.write(tensors[k][2])


def floats(dtype, data):
    if dtype == "F32":
        a = array.array("f")
        a.frombytes(data)
        return list(a)
    if dtype == "F16":
        return list(struct.unpack("<%de" % (len(data) // 2), data))
    raise ValueError(dtype)


def copy_tree_writable(src, dst):
    """copytree keeping links and stubs as they are, then owner-writable (the goldens are
    read-only, and the copies must be removable)."""
    shutil.copytree(src, dst, symlinks=True)
    for d, dirs, names in os.walk(dst):
        os.chmod(d, 0o755)
        for n in names:
            p = os.path.join(d, n)
            if not os.path.islink(p):
                os.chmod(p, 0o644)


def rel_l2(a, b):
    num = sum((x - y) ** 2 for x, y in zip(a, b))
    den = sum(y * y for y in b)
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)


def source_files(root):
    """repo path -> real file, as the server lists them."""
    out = {}
    for d, _, names in os.walk(root, followlinks=True):
        for n in names:
            full = os.path.join(d, n)
            out[os.path.relpath(full, root)] = resolve(full)
    return out


# ---- processes --------------------------------------------------------------------------------

ISOLATED = {}  # environment of every run: no real hub cache or GIMP folder of the machine


def run(args, env=None, timeout=120):
    e = dict(os.environ)
    e.update(ISOLATED)
    e.update(env or {})
    p = subprocess.run([EXE] + args, capture_output=True, text=True, env=e, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


class Server:
    """hubserver.py in a child process, on a free port of 127.0.0.1."""

    def __init__(self, tmp, repos, *extra):
        self.log = os.path.join(tmp, "server-%d.log" % random.randrange(1 << 30))
        port_file = self.log + ".port"
        cmd = [sys.executable, os.path.join(HERE, "hubserver.py"), "--port-file", port_file,
               "--log", self.log, "--lifetime", "300",
               "--hash-cache", os.path.join(tmp, "hash-cache.json")]
        for name, root in repos.items():
            cmd += ["--repo", "%s=%s" % (name, root)]
        cmd += list(extra)
        self.proc = subprocess.Popen(cmd)
        t0 = time.monotonic()
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.monotonic() - t0 > 30:
                raise RuntimeError("hubserver did not start")
            time.sleep(0.02)
        with open(port_file) as f:
            self.port = int(f.read())
        self.url = "http://127.0.0.1:%d" % self.port

    def requests(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return [json.loads(line) for line in f if line.strip()]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---- fixtures ---------------------------------------------------------------------------------

def make_clip_repo(tmp):
    """A stand-in for openai/clip-vit-large-patch14: a full CLIPModel safetensors file (text
    tower, vision tower = the golden image encoder, logit_scale) whose header is > 64 KiB."""
    d = os.path.join(tmp, "clip-vit-large-patch14")
    if os.path.exists(d):
        return d
    os.makedirs(d)
    vis, _ = st_read(os.path.join(VAR, "image_encoder", "model.safetensors"))
    txt, _ = st_read(os.path.join(T2I, "text_encoder", "model.safetensors"))
    t = dict(txt)
    t.update(vis)
    t["logit_scale"] = ("F32", [], struct.pack("<f", 4.6052))
    meta = {"format": "pt", "note": "x" * 150000}
    st_write(os.path.join(d, "model.safetensors"), t, meta)
    vcfg = json.loads(read_bytes(os.path.join(VAR, "image_encoder", "config.json")))
    tcfg = json.loads(read_bytes(os.path.join(T2I, "text_encoder", "config.json")))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"architectures": ["CLIPModel"], "model_type": "clip",
                   "projection_dim": vcfg["projection_dim"], "text_config": tcfg,
                   "vision_config": vcfg}, f, indent=2)
    return d


def repos(tmp):
    return {"kakaobrain/karlo-v1-alpha": T2I,
            "kakaobrain/karlo-v1-alpha-image-variations": VAR,
            "openai/clip-vit-large-patch14": make_clip_repo(tmp)}


# The plan's files: dest path -> (repo, repo path). Mirrors the table in engine/io/download.c.
T2I_FILES = ["tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/special_tokens_map.json",
             "tokenizer/tokenizer_config.json", "text_encoder/config.json",
             "text_encoder/model.safetensors", "prior/config.json",
             "prior/diffusion_pytorch_model.safetensors", "prior_scheduler/scheduler_config.json",
             "text_proj/config.json", "text_proj/diffusion_pytorch_model.safetensors",
             "decoder/config.json", "decoder/diffusion_pytorch_model.safetensors",
             "decoder_scheduler/scheduler_config.json", "super_res_first/config.json",
             "super_res_first/diffusion_pytorch_model.safetensors", "super_res_last/config.json",
             "super_res_last/diffusion_pytorch_model.safetensors",
             "super_res_scheduler/scheduler_config.json"]
IMG_FILES = ["feature_extractor/preprocessor_config.json", "image_encoder/config.json"]


def check_download(dest, with_image=True, what=""):
    """Every whole file identical to its source; the extracted encoder equal to the golden."""
    for p in T2I_FILES:
        got = os.path.join(dest, p)
        check(os.path.isfile(got) and read_bytes(got) == read_bytes(os.path.join(T2I, p)),
              "%s%s differs from the source" % (what, p))
    if with_image:
        for p in IMG_FILES:
            got = os.path.join(dest, p)
            check(os.path.isfile(got) and read_bytes(got) == read_bytes(os.path.join(VAR, p)),
                  "%s%s differs from the source" % (what, p))
        got, _ = st_read(os.path.join(dest, "image_encoder", "model.safetensors"))
        want, _ = st_read(os.path.join(VAR, "image_encoder", "model.safetensors"))
        check(got == want, "%simage_encoder/model.safetensors: tensors differ from the golden "
              "image encoder (%d vs %d)" % (what, len(got), len(want)))
    leftovers = [os.path.join(d, n) for d, _, ns in os.walk(dest) for n in ns
                 if n.endswith(".part")]
    check(not leftovers, "%s.part files left: %s" % (what, leftovers))
    idx = json.load(open(os.path.join(dest, "model_index.json")))
    comps = sorted(k for k in idx if not k.startswith("_"))
    check(len(comps) == (12 if with_image else 10), "%smodel_index.json lists %s" % (what, comps))


def partial_finals(dest):
    """Files under a final name that differ from their source (must never happen)."""
    bad = []
    srcs = {p: os.path.join(T2I, p) for p in T2I_FILES}
    srcs.update({p: os.path.join(VAR, p) for p in IMG_FILES})
    for p, s in srcs.items():
        got = os.path.join(dest, p)
        if os.path.exists(got) and read_bytes(got) != read_bytes(s):
            bad.append(p)
    enc = os.path.join(dest, "image_encoder", "model.safetensors")
    if os.path.exists(enc):
        want, _ = st_read(os.path.join(VAR, "image_encoder", "model.safetensors"))
        try:
            ok = st_read(enc)[0] == want
        except Exception:
            ok = False
        if not ok:
            bad.append("image_encoder/model.safetensors")
    return bad


def parity(tmp, t2i_dir, var_dir, files, fp16_tol, tag):
    """Runs `unclip parity` with the model folders replaced; returns {file: worst rel L2}."""
    root = os.path.join(tmp, "root-" + tag)
    os.makedirs(os.path.join(root, "models"))
    os.symlink(os.path.join(GOLDENS, "goldens"), os.path.join(root, "goldens"))
    os.symlink(os.path.abspath(t2i_dir), os.path.join(root, "models", "tiny-karlo"))
    os.symlink(os.path.abspath(var_dir), os.path.join(root, "models", "tiny-karlo-variations"))
    out = os.path.join(tmp, "parity-" + tag)
    args = ["parity"]
    for f in files:
        args += ["--only", f]
    rc, so, se = run(args + [root, out], timeout=600)
    if not check(rc == 0, "parity on %s: exit %d: %s %s" % (tag, rc, so[-2000:], se[-2000:])):
        return {}
    worst = {}
    for f in files:
        ours, meta = st_read(os.path.join(out, f))
        gold, _ = st_read(os.path.join(GOLDENS, "goldens", f))
        outs = [n for n in meta.get("parity.outputs", "").split(",") if n]
        check(outs, "%s: parity computed nothing" % f)
        w = 0.0
        for n in outs:
            if ours[n][0] not in ("F32", "F16") or gold[n][0] not in ("F32", "F16"):
                continue
            w = max(w, rel_l2(floats(ours[n][0], ours[n][2]), floats(gold[n][0], gold[n][2])))
        worst[f] = w
        check(w <= fp16_tol, "%s on %s: rel L2 %.3g > %g" % (f, tag, w, fp16_tol))
        print("  %-28s %-14s worst rel L2 %.3g (tolerance %g)" % (f, tag, w, fp16_tol))
    return worst


# ---- scenarios --------------------------------------------------------------------------------

def scenario_basic(tmp):
    srv = Server(tmp, repos(tmp), "--page-size", "7", "--redirect")
    try:
        dest = os.path.join(tmp, "karlo")
        t0 = time.monotonic()
        rc, so, se = run(["download", "karlo", "--dest", dest, "--mirror", srv.url])
        dt = time.monotonic() - t0
        check(rc == 0, "download: exit %d: %s" % (rc, se[-3000:]))
        check("is ready in" in so, "download: no final line: %r" % so)
        check(se.count("verified") == 22, "download: %d files reported verified, 22 expected"
              % se.count("verified"))
        check_download(dest)
        reqs = srv.requests()
        pages = [r for r in reqs if "/api/models/" in r["path"]]
        check(len([p for p in pages if "karlo-v1-alpha?" in p["path"] or
                   "karlo-v1-alpha/tree" in p["path"]]) >= 3,
              "tree API pages not followed: %s" % [p["path"] for p in pages])
        ranges = [r for r in reqs if r["status"] == 206 and "/cdn/" in r["path"]]
        big = os.path.getsize(os.path.join(tmp, "clip-vit-large-patch14", "model.safetensors"))
        sent = sum(r["sent"] for r in ranges)
        enc = os.path.getsize(os.path.join(dest, "image_encoder", "model.safetensors"))
        check(ranges and sent < big * 0.6,
              "extraction fetched %d bytes of a %d-byte file (only the vision part and the "
              "header should come)" % (sent, big))
        print("  download: %.2f s, %d requests; image encoder: %d range requests, %d of %d "
              "bytes fetched, %d written" % (dt, len(reqs), len(ranges), sent, big, enc))

        # Again: everything is kept, no file body is fetched.
        n0 = len(srv.requests())
        rc, so, se = run(["download", "karlo", "--dest", dest, "--mirror", srv.url])
        check(rc == 0, "second download: exit %d: %s" % (rc, se[-2000:]))
        check(se.count("already there, verified") == 22,
              "second download: %d files kept" % se.count("already there, verified"))
        bodies = [r for r in srv.requests()[n0:] if "/resolve/" in r["path"] or
                  "/cdn/" in r["path"]]
        fetched = sum(r["sent"] for r in bodies)
        check(fetched < 300000, "second download fetched %d body bytes" % fetched)
        # A file damaged in place is noticed and replaced.
        victim = os.path.join(dest, "decoder", "config.json")
        with open(victim, "a") as f:
            f.write(" ")
        rc, so, se = run(["download", "karlo", "--dest", dest, "--mirror", srv.url])
        check(rc == 0 and "does not match" in se, "damaged file not noticed: %s" % se[-2000:])
        check_download(dest, what="after repair: ")

        # The engine reads the extracted image encoder like the golden one (fp32).
        parity(tmp, dest, dest, ["vision_encoder.safetensors", "text_encoder.safetensors"],
               1e-4, "downloaded")

        # --only text-to-image: no image encoder, 10 components
        dest2 = os.path.join(tmp, "karlo-t2i")
        rc, so, se = run(["download", "karlo", "--only", "text-to-image", "--dest", dest2,
                          "--mirror", srv.url])
        check(rc == 0, "--only text-to-image: exit %d: %s" % (rc, se[-2000:]))
        check_download(dest2, with_image=False, what="t2i only: ")
        check(not os.path.exists(os.path.join(dest2, "image_encoder")),
              "--only text-to-image fetched the image encoder")
        # UNCLIP_HF_ENDPOINT instead of --mirror; then the variations part only
        rc, so, se = run(["download", "karlo", "--only", "image-encoder", "--dest", dest2],
                         env={"UNCLIP_HF_ENDPOINT": srv.url, "HF_ENDPOINT": "http://127.0.0.1:9"})
        check(rc == 0, "UNCLIP_HF_ENDPOINT: exit %d: %s" % (rc, se[-2000:]))
        check_download(dest2, what="t2i + image encoder: ")
    finally:
        srv.stop()


def scenario_faults(tmp):
    r = repos(tmp)
    srv = Server(tmp, r, "--drop", "0.5", "--seed", "7", "--max-drops", "40", "--redirect")
    try:
        dest = os.path.join(tmp, "dropped")
        rc, so, se = run(["download", "karlo", "--dest", dest, "--mirror", srv.url,
                          "--attempts", "40", "--retry-delay", "5"])
        check(rc == 0, "download through dropped connections: exit %d: %s" % (rc, se[-3000:]))
        check_download(dest, what="dropped: ")
        reqs = srv.requests()
        cuts = [q for q in reqs if q.get("cut")]
        resumed = [q for q in reqs if q["status"] == 206 and q["range"] and
                   not q["range"].startswith("bytes=0-")]
        check(len(cuts) >= 5, "only %d connections were dropped" % len(cuts))
        check(resumed, "no transfer was resumed with a Range request")
        check("resuming at" in se, "no resume reported")
        print("  dropped connections: %d, resumed range requests: %d" % (len(cuts), len(resumed)))
    finally:
        srv.stop()

    srv = Server(tmp, r, "--corrupt", "text_encoder/model.safetensors",
                 "--corrupt", "tokenizer/vocab.json:2")
    try:
        dest = os.path.join(tmp, "corrupt")
        rc, so, se = run(["download", "karlo", "--dest", dest, "--mirror", srv.url,
                          "--retry-delay", "5"])
        check(rc == 0, "download with corrupted bytes: exit %d: %s" % (rc, se[-3000:]))
        check_download(dest, what="corrupt: ")
        check(se.count("the download is corrupt") == 3,
              "expected 3 corrupt downloads reported:\n%s" % se[-3000:])
        check("SHA-256" in se and "git blob SHA-1" in se, "both hash kinds should be reported")
        n_te = [q for q in srv.requests() if q["path"].endswith("text_encoder/model.safetensors")]
        check(len(n_te) == 2, "text encoder fetched %d times, 2 expected" % len(n_te))
        # A file corrupted on every attempt: the download fails and nothing is in place.
        dest2 = os.path.join(tmp, "corrupt-always")
        srv2 = Server(tmp, r, "--corrupt", "text_proj/config.json:99")
        try:
            rc, so, se = run(["download", "karlo", "--dest", dest2, "--mirror", srv2.url,
                              "--attempts", "3", "--retry-delay", "1", "--only", "text-to-image"])
        finally:
            srv2.stop()
        check(rc == 1 and "corrupt" in se, "always-corrupt file: exit %d: %s" % (rc, se[-2000:]))
        check(not os.path.exists(os.path.join(dest2, "text_proj", "config.json")),
              "a corrupt file was put in place")
    finally:
        srv.stop()


def scenario_errors(tmp):
    # Down: a port nobody listens on.
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    dest = os.path.join(tmp, "down")
    t0 = time.monotonic()
    rc, so, se = run(["download", "karlo", "--dest", dest, "--mirror",
                      "http://127.0.0.1:%d" % port, "--retry-delay", "10"])
    dt = time.monotonic() - t0
    check(rc == 1, "server down: exit %d" % rc)
    check("127.0.0.1:%d" % port in se and "is the server up" in se,
          "server down: unclear message: %s" % se)
    check(dt < 10, "server down: gave up after %.1f s" % dt)
    check(not os.path.exists(os.path.join(dest, "model_index.json")),
          "server down: model_index.json written")
    print("  down: %.2f s: %s" % (dt, se.strip().splitlines()[-2] if se.strip() else ""))

    # A mirror that lacks a file: reported before anything is written.
    partial = os.path.join(tmp, "partial-karlo")
    copy_tree_writable(T2I, partial)
    os.unlink(os.path.join(partial, "prior", "config.json"))
    r = repos(tmp)
    r["kakaobrain/karlo-v1-alpha"] = partial
    srv = Server(tmp, r)
    try:
        dest = os.path.join(tmp, "incomplete")
        rc, so, se = run(["download", "karlo", "--dest", dest, "--mirror", srv.url])
        check(rc == 1 and "has no prior/config.json" in se,
              "missing file: exit %d: %s" % (rc, se))
        files = [n for _, _, ns in os.walk(dest) for n in ns] if os.path.exists(dest) else []
        check(not files, "missing file: files written anyway: %s" % files)
        # A revision the server does not have
    finally:
        srv.stop()

    # A server that ignores Range: whole files still arrive, extraction is refused clearly.
    srv = Server(tmp, repos(tmp), "--no-range")
    try:
        dest = os.path.join(tmp, "norange")
        rc, so, se = run(["download", "karlo", "--only", "image-encoder", "--dest", dest,
                          "--mirror", srv.url])
        check(rc == 1 and "Range" in se, "no-range server: exit %d: %s" % (rc, se))
        check(not os.path.exists(os.path.join(dest, "image_encoder", "model.safetensors")),
              "no-range: an image encoder was written")
        # whole files from such a server: a .part to resume is started again from byte 0
        dest = os.path.join(tmp, "norange-t2i")
        part = os.path.join(dest, "tokenizer", "vocab.json.part")
        os.makedirs(os.path.dirname(part))
        with open(part, "wb") as f:
            f.write(read_bytes(os.path.join(T2I, "tokenizer", "vocab.json"))[:1000] + b"junk")
        rc, so, se = run(["download", "karlo", "--only", "text-to-image", "--dest", dest,
                          "--mirror", srv.url])
        check(rc == 0 and "does not resume" in se, "no-range resume: %d %s" % (rc, se[-2000:]))
        check_download(dest, with_image=False, what="no-range: ")
    finally:
        srv.stop()

    rc, so, se = run(["download", "dalle"])
    check(rc == 2 and "no model called 'dalle'" in se, "unknown model: exit %d: %s" % (rc, se))
    rc, so, se = run(["download", "karlo", "--only", "everything"])
    check(rc == 2, "bad --only: exit %d" % rc)


def bytes_on_disk(dest):
    total, parts = 0, 0
    for d, _, ns in os.walk(dest):
        for n in ns:
            try:
                size = os.path.getsize(os.path.join(d, n))
            except OSError:
                continue  # renamed between listing and stat
            total += size
            parts += n.endswith(".part")
    return total, parts


def scenario_kill(tmp):
    rng = random.Random(int(os.environ.get("UNCLIP_TEST_SEED", "20261125")))
    # Kill points are chosen by progress, not by time, so a loaded machine moves them along
    # with the download: each round kills when the bytes on disk pass a random point of what
    # is left. ~26 MB at 20 MB/s: a whole run is ~1.4 s.
    srv = Server(tmp, repos(tmp), "--throttle", "20000000", "--redirect")
    dest = os.path.join(tmp, "killed")
    everything = sum(os.path.getsize(f) for f in source_files(T2I).values())
    saw_part = False
    points = []
    try:
        for k in range(6):
            now, _ = bytes_on_disk(dest)
            target = now + rng.uniform(0.1, 0.6) * max(everything - now, 0)
            p = subprocess.Popen([EXE, "download", "karlo", "--dest", dest, "--mirror", srv.url,
                                  "--retry-delay", "5"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=dict(os.environ, **ISOLATED))
            t0 = time.monotonic()
            while p.poll() is None and time.monotonic() - t0 < 60:
                have, parts = bytes_on_disk(dest)
                saw_part |= parts > 0
                if have >= target:
                    break
                time.sleep(0.005)
            p.send_signal(signal.SIGKILL)
            p.wait()
            points.append(bytes_on_disk(dest)[0])
            bad = partial_finals(dest)
            check(not bad, "after kill %d: partial files under final names: %s" % (k, bad))
            saw_part |= bytes_on_disk(dest)[1] > 0
        rc, so, se = run(["download", "karlo", "--dest", dest, "--mirror", srv.url])
        check(rc == 0, "final run: exit %d: %s" % (rc, se[-2000:]))
        check(saw_part, "no kill left a .part file")
        check_download(dest, what="after kills: ")
        print("  6 kills at %s bytes on disk (of ~%d), final run: %s" %
              (points, everything, "resumed" if "resuming at" in se else "no resume needed"))
    finally:
        srv.stop()


def weight_files(root):
    out = []
    for d, _, ns in os.walk(root):
        out += [os.path.join(d, n) for n in ns if n.endswith(".safetensors")]
    return sorted(out)


def scenario_convert(tmp):
    t0 = time.monotonic()
    out_t2i = os.path.join(tmp, "tiny-karlo-fp16")
    rc, so, se = run(["convert", "--fp16", T2I, out_t2i])
    check(rc == 0, "convert: exit %d: %s" % (rc, se))
    out_var = os.path.join(tmp, "tiny-karlo-variations-fp16")
    rc, so, se = run(["convert", "--fp16", VAR, out_var])
    check(rc == 0, "convert (stubs): exit %d: %s" % (rc, se))
    print("  convert: %.2f s for both" % (time.monotonic() - t0))
    rc, so, se = run(["convert", "--fp16", T2I, out_t2i])
    check(rc == 1 and "exists" in se, "convert onto an existing folder: exit %d" % rc)
    rc, so, se = run(["convert", T2I, os.path.join(tmp, "x")])
    check(rc == 2, "convert without --fp16: exit %d" % rc)

    for src, dst in ((T2I, out_t2i), (VAR, out_var)):
        src_bytes = dst_bytes = 0
        for rel, real in source_files(src).items():
            got = os.path.join(dst, rel)
            check(os.path.isfile(got) and not os.path.islink(got), "%s: missing or a link" % got)
            if not rel.endswith(".safetensors"):
                check(read_bytes(got) == read_bytes(real), "%s: not copied verbatim" % got)
                continue
            a, _ = st_read(real)
            b, meta = st_read(got)
            src_bytes += os.path.getsize(real)
            dst_bytes += os.path.getsize(got)
            check(sorted(a) == sorted(b), "%s: tensor names differ" % got)
            check(meta.get("unclip.convert") == "fp16", "%s: no conversion note" % got)
            for n, (dt, shape, data) in a.items():
                bdt, bshape, bdata = b[n]
                check(bshape == shape, "%s %s: shape" % (got, n))
                if dt == "F32":
                    check(bdt == "F16", "%s %s: %s, F16 expected" % (got, n, bdt))
                    # struct's "e" rounds to nearest even, as IEEE and the converter must
                    x = floats("F32", data)
                    want = struct.pack("<%de" % len(x), *x)
                    check(bdata == want, "%s %s: not the nearest fp16 values" % (got, n))
                else:
                    check(bdt == dt and bdata == data, "%s %s: non-float changed" % (got, n))
        ratio = dst_bytes / src_bytes
        check(0.49 < ratio < 0.52, "%s: weights %d -> %d bytes (ratio %.3f)" %
              (dst, src_bytes, dst_bytes, ratio))
        print("  %s: weights %.2f MB -> %.2f MB (%.3f)" %
              (os.path.basename(dst), src_bytes / 1e6, dst_bytes / 1e6, ratio))
    # The engine runs the fp16 copies: golden checks with the fp16 tolerance.
    w = parity(tmp, out_t2i, out_var, ["text_encoder.safetensors", "vision_encoder.safetensors"],
               5e-3, "fp16")
    for f, v in w.items():
        check(v > 1e-7, "%s: fp16 copy gives exactly the fp32 result (%.3g): not fp16 weights?"
              % (f, v))
    check(not os.path.exists(out_t2i + ".part"), "convert left a .part folder")


def build_hub_cache(hub, repo, src, rev):
    """huggingface_hub's layout: blobs/<sha256 or git sha1>, snapshots/<rev>/<path> -> blob."""
    base = os.path.join(hub, "models--" + repo.replace("/", "--"))
    os.makedirs(os.path.join(base, "blobs"))
    os.makedirs(os.path.join(base, "refs"))
    with open(os.path.join(base, "refs", "main"), "w") as f:
        f.write(rev)
    for rel, real in source_files(src).items():
        data = read_bytes(real)
        if rel.endswith(".safetensors"):
            name = hashlib.sha256(data).hexdigest()
        else:
            name = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        blob = os.path.join(base, "blobs", name)
        if not os.path.exists(blob):
            with open(blob, "wb") as f:
                f.write(data)
        link = os.path.join(base, "snapshots", rev, rel)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
    return os.path.join(base, "snapshots", rev)


def scenario_hubcache(tmp):
    hub = os.path.join(tmp, "hf", "hub")
    rev = "5ee4529b1c0ffee0000000000000000000000000"
    snap = build_hub_cache(hub, "kakaobrain/karlo-v1-alpha", T2I, rev)
    # an older snapshot without refs pointing at it must not win
    old = os.path.join(hub, "models--kakaobrain--karlo-v1-alpha", "snapshots", "0ld")
    os.makedirs(old)
    check(os.path.islink(os.path.join(snap, "prior", "diffusion_pytorch_model.safetensors")),
          "the snapshot should hold symlinks")
    gimp = os.path.join(tmp, "gimp-config")
    os.makedirs(gimp)
    home = os.path.join(tmp, "home")
    os.makedirs(home)
    base_env = {"HOME": home, "GIMP3_DIRECTORY": gimp, "HF_HUB_CACHE": hub,
                "XDG_CONFIG_HOME": "", "XDG_CACHE_HOME": "", "HF_HOME": "", "UNCLIP_MODEL": "",
                "UNCLIP_DATADIR": ""}

    def find(args, env=None):
        e = dict(base_env)
        e.update(env or {})
        rc, so, se = run(["find-model"] + args, env=e)
        return rc, so.strip(), se

    rc, out, se = find(["karlo"])
    check(rc == 0 and out == snap, "karlo from the hub cache: %d %r %s" % (rc, out, se))
    for name in ("karlo-v1-alpha", "kakaobrain/karlo-v1-alpha"):
        rc, out, se = find([name])
        check(rc == 0 and out == snap, "%s from the hub cache: %r %s" % (name, out, se))
    # HF_HOME/hub when HF_HUB_CACHE is unset; ~/.cache/huggingface/hub when neither
    rc, out, se = find(["karlo"], {"HF_HUB_CACHE": "", "HF_HOME": os.path.join(tmp, "hf")})
    check(rc == 0 and out == snap, "HF_HOME/hub: %r %s" % (out, se))
    os.makedirs(os.path.join(home, ".cache", "huggingface"))
    os.symlink(hub, os.path.join(home, ".cache", "huggingface", "hub"))
    rc, out, se = find(["karlo"], {"HF_HUB_CACHE": ""})
    check(rc == 0 and out.endswith(rev), "~/.cache/huggingface/hub: %r %s" % (out, se))
    # a repo folder or the snapshots folder given directly
    rc, out, se = find([os.path.dirname(os.path.dirname(snap))])
    check(rc == 0 and out == snap, "hub repo folder given: %r %s" % (out, se))
    # variations need an image encoder: the text-to-image snapshot is named and skipped
    rc, out, se = find(["--need", "variations", "karlo"])
    check(rc == 1 and "image_encoder" in se and snap in se and "unclip download karlo" in se,
          "variations without an image encoder: %d %s" % (rc, se))
    # the GIMP models folder comes before the hub cache
    mine = os.path.join(gimp, "unclip", "models", "karlo-v1-alpha")
    copy_tree_writable(VAR, mine)  # stubs copied as stubs: they point nowhere from here
    rc, out, se = find(["karlo"])
    check(rc == 0 and out == snap and "karlo-v1-alpha" in out,
          "a broken GIMP-folder copy must be skipped: %r %s" % (out, se))
    shutil.rmtree(mine)
    os.makedirs(os.path.dirname(mine), exist_ok=True)
    os.symlink(VAR, mine)
    rc, out, se = find(["karlo"])
    check(rc == 0 and out == mine, "GIMP models folder first: %r %s" % (out, se))
    rc, out, se = find(["--need", "variations", "karlo"])
    check(rc == 0 and out == mine, "variations from the GIMP folder: %r %s" % (out, se))
    rc, out, se = find(["--gimp-dir", os.path.join(tmp, "nowhere"), "karlo"])
    check(rc == 0 and out == snap, "--gimp-dir: %r %s" % (out, se))
    # an explicit folder wins; UNCLIP_MODEL when no name; a missing path is an error
    rc, out, se = find([T2I], {"UNCLIP_MODEL": VAR})
    check(rc == 0 and out == T2I, "given folder: %r %s" % (out, se))
    rc, out, se = find([], {"UNCLIP_MODEL": VAR})
    check(rc == 0 and out == VAR, "UNCLIP_MODEL folder: %r %s" % (out, se))
    rc, out, se = find([], {"UNCLIP_MODEL": "karlo"})
    check(rc == 0 and out == mine, "UNCLIP_MODEL name: %r %s" % (out, se))
    rc, out, se = find([os.path.join(tmp, "no", "such")])
    check(rc == 1 and "no such folder" in se, "missing path: %d %s" % (rc, se))
    rc, out, se = find([tmp])
    check(rc == 1 and "model_index.json" in se, "folder without a model: %d %s" % (rc, se))
    # a name found nowhere: the report lists the places
    rc, out, se = find(["someone/other-model"])
    check(rc == 1 and os.path.join(gimp, "unclip", "models", "other-model") in se and
          "models--someone--other-model" in se, "unknown name report: %s" % se)
    print("  report for an unknown name:\n    " + se.strip().replace("\n", "\n    "))
    # the default model: UNCLIP_DATADIR, never a silent switch for a named model
    dd = os.path.join(tmp, "datadir")
    os.makedirs(os.path.join(dd, "models"))
    os.symlink(T2I, os.path.join(dd, "models", "shapes-v1"))
    rc, out, se = find([], {"UNCLIP_DATADIR": dd})
    check(rc == 0 and out == os.path.join(dd, "models", "shapes-v1"),
          "default model from UNCLIP_DATADIR: %r %s" % (out, se))
    rc, out, se = find(["karlo-variations"], {"UNCLIP_DATADIR": dd})
    check(rc == 1 and "shapes-v1" not in out, "a named model fell back to the default: %r" % out)

    # The engine reads weights through the snapshot's symlinks into blobs/.
    parity(tmp, snap, VAR, ["text_encoder.safetensors"], 1e-4, "hubcache")

    # `unclip download` takes what the cache has: the Karlo files by their published hash, the
    # image encoder's ranges from a cached whole CLIP file; a damaged blob is not taken.
    r = repos(tmp)
    build_hub_cache(hub, "openai/clip-vit-large-patch14", r["openai/clip-vit-large-patch14"],
                    "c1" * 20)
    victim = os.path.join(hub, "models--kakaobrain--karlo-v1-alpha", "blobs",
                          hashlib.sha256(read_bytes(os.path.join(
                              T2I, "text_proj", "diffusion_pytorch_model.safetensors"))).hexdigest())
    data = bytearray(open(victim, "rb").read())
    data[len(data) // 2] ^= 1
    open(victim, "wb").write(data)
    srv = Server(tmp, r)
    try:
        dest = os.path.join(tmp, "from-cache")
        rc, so, se = run(["download", "karlo", "--dest", dest, "--mirror", srv.url,
                          "--retry-delay", "1"], env={"HF_HUB_CACHE": hub})
        check(rc == 0, "download from the cache: exit %d: %s" % (rc, se[-3000:]))
        check_download(dest, what="from the cache: ")
        taken = se.count("taken from the hub cache")
        check(taken == len(T2I_FILES), "%d files taken from the cache, %d expected" %
              (taken, len(T2I_FILES)))
        check("reading the tensors from the hub cache" in se, "CLIP ranges not read from cache")
        check("text_proj/diffusion_pytorch_model.safetensors: SHA-256" in se,
              "the damaged blob was not caught: %s" % se[-3000:])
        bodies = [q for q in srv.requests() if "/resolve/" in q["path"]]
        fetched = sorted(set(q["path"].split("/resolve/main/")[1] for q in bodies))
        check(fetched == ["feature_extractor/preprocessor_config.json",
                          "image_encoder/config.json", "model.safetensors",
                          "text_proj/diffusion_pytorch_model.safetensors"],
              "fetched from the server despite the cache: %s" % fetched)
        check(os.path.exists(victim) and open(victim, "rb").read() == bytes(data),
              "the cache's blob was modified")
        print("  from the hub cache: %d files linked, fetched from the server: %s" %
              (taken, fetched))
        dest2 = os.path.join(tmp, "no-cache")
        rc, so, se = run(["download", "karlo", "--dest", dest2, "--mirror", srv.url,
                          "--no-hub-cache", "--only", "text-to-image"], env={"HF_HUB_CACHE": hub})
        check(rc == 0 and "hub cache" not in se, "--no-hub-cache: %d %s" % (rc, se[-2000:]))
    finally:
        srv.stop()


def main():
    tmp = tempfile.mkdtemp(prefix="unclip-dl-")
    os.makedirs(os.path.join(tmp, "empty-hub"))
    ISOLATED.update({"HF_HUB_CACHE": os.path.join(tmp, "empty-hub"),
                     "GIMP3_DIRECTORY": os.path.join(tmp, "empty-gimp")})
    t0 = time.monotonic()
    try:
        {"basic": scenario_basic, "faults": scenario_faults, "errors": scenario_errors,
         "kill": scenario_kill, "convert": scenario_convert,
         "hubcache": scenario_hubcache}[SCENARIO](tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %d checks, %d failed, %.1f s" % (SCENARIO, checks, failures,
                                               time.monotonic() - t0))
    print("%d passed, %d failed" % (checks - failures, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
