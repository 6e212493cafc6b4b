#!/usr/bin/env python3
# Time to healthy of `box serve --no-local --tensor-split 1,1` over 2 loopback `box worker`s, for
# one or more box binaries side by side (interleaved per repetition), against raw loopback TCP
# (`box bench --sink`) moving the model file's bytes. For before/after checks of a change:
#   git worktree add /tmp/base HEAD && (cd /tmp/base && make build)   # then change, make build
#   scripts/load-vs-base.py /tmp/base/bin/box,bin/box 5 nocache,cache
# nocache: workers without --cache. cache: workers with empty --cache dirs (cold), then a new head
# with the same --cache-dir (its memo) onto the same workers (warm). MODEL= picks the GGUF
# (default: the cached 1b Q8_0 preset, `box model synth --preset 1b --type q8_0`).
import subprocess, sys, time, socket, os, tempfile, http.client, statistics, json, re, shutil
MODEL = os.environ.get("MODEL") or os.path.expanduser("~/.cache/box/synth-1b-q8_0-s1-r2.gguf")
bins = sys.argv[1].split(",")
reps = int(sys.argv[2])
modes = sys.argv[3].split(",") if len(sys.argv) > 3 else ["nocache"]
port = [41100]
def nextport():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    return p
def wait_rpc(p):
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", p), 0.2).close(); return
        except OSError: time.sleep(0.01)
    raise SystemExit("worker did not start")
def worker(b, cache=None):
    p = nextport()
    args = [b, "worker", "--listen", f"127.0.0.1:{p}", "--admin", "", "--threads", "2", "--log-level", "error"]
    if cache: args += ["--cache", cache]
    pr = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_rpc(p)
    return pr, p
def healthy(b, ws, cachedir, linger=0):
    hp = nextport()
    args = [b, "serve", "--model", MODEL, "--rpc", ",".join(f"127.0.0.1:{p}@" for _, p in ws), "--no-local",
            "--tensor-split", "1,1", "--threads", "1", "--listen", f"127.0.0.1:{hp}", "--cache-dir", cachedir,
            "--ctx-size", "512", "--log-level", "error"]
    t0 = time.monotonic()
    pr = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while True:
        if pr.poll() is not None: raise SystemExit("serve exited: " + pr.stderr.read().decode()[-2000:])
        try:
            c = http.client.HTTPConnection("127.0.0.1", hp, timeout=1); c.request("GET", "/health")
            if c.getresponse().status == 200: break
        except OSError: pass
        time.sleep(0.005)
    dt = time.monotonic() - t0
    time.sleep(linger)
    pr.terminate(); pr.wait()
    return dt
def raw(b, nbytes):
    p = nextport(); chunk = 64 << 20
    pr = subprocess.Popen([b, "bench", "--sink", str(chunk)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addr = pr.stdout.readline().strip().split()[-1]
    h, pp = addr.rsplit(":", 1)
    s = socket.create_connection((h, int(pp))); buf = bytearray(chunk)
    n = (nbytes + chunk - 1) // chunk
    t0 = time.monotonic()
    for _ in range(n):
        s.sendall(buf); s.recv(1)
    dt = (time.monotonic() - t0) * nbytes / (n * chunk)
    s.close(); pr.terminate(); pr.wait()
    return dt
NBYTES = int(os.environ.get("NBYTES", str(os.path.getsize(MODEL))))
res = {}
for r in range(reps):
    for b in bins:
        res.setdefault(("raw", "tcp"), []).append(raw(b, NBYTES))
        for m in modes:
            tmp = tempfile.mkdtemp(prefix="lb")
            if m == "nocache":
                ws = [worker(b), worker(b)]
                t = healthy(b, ws, tmp + "/head")
            else:  # cache: cold (empty caches, fresh head memo), then warm (same head dir)
                ws = [worker(b, f"{tmp}/c{i}") for i in range(2)]
                t = healthy(b, ws, tmp + "/head", linger=2.5)
                res.setdefault((b, "cache-cold"), []).append(t)
                m, t = "cache-warm", healthy(b, ws, tmp + "/head")
            res.setdefault((b, m), []).append(t)
            for w, _ in ws: w.terminate(); w.wait()
            shutil.rmtree(tmp)
        print(r, b, {k[1]: round(v[-1], 3) for k, v in res.items() if k[0] == b}, flush=True)
print()
for k, v in res.items():
    sd = statistics.stdev(v) if len(v) > 1 else 0
    print(f"{k[0]:>16} {k[1]:<11} {statistics.mean(v):.3f} ± {sd:.3f} s  min {min(v):.3f} max {max(v):.3f}  n={len(v)}")
