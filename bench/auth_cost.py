#!/usr/bin/env python3
"""The cost of authentication on one release node: the time of
POST /auth/token (the PBKDF2 check) and of sequential 100-byte puts, first
anonymous with auth disabled, then as a user with a token once auth is
enabled (each put then carries a token the node verifies, and is applied
as Op::AsUser with its permission checked). Prints three lines.

    bench/auth_cost.py [path to raft-kv-server]   # default target/release

Not a test: run_tests.sh does not run it.
"""
import http.client, json, os, socket, subprocess, sys, tempfile, time, statistics
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "raft-kv-server")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
d = tempfile.mkdtemp(prefix="auth-cost-")  # removed with the node at the end
tok = "measure-token"
p = subprocess.Popen([BIN, "--node-id", "1", "--host", "127.0.0.1", "--port", str(port), "--data-dir", d + "/n1",
                      "--cluster-token", tok], stdout=open(d + "/log", "w"), stderr=subprocess.STDOUT)
try:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    def req(m, path, body=None, bearer=None, ct=True):
        h = {"x-raft-cluster-token": tok}
        if body is not None: h["content-type"] = "application/json"
        if bearer: h["authorization"] = "Bearer " + bearer
        c.request(m, path, json.dumps(body) if body is not None else None, h)
        r = c.getresponse(); data = r.read()
        return r.status, data
    deadline = time.time() + 20
    while True:
        try:
            st, _ = req("PUT", "/key/warm", {"value": "x"})
            if st == 200: break
        except Exception:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        if time.time() > deadline: raise SystemExit("node did not start")
        time.sleep(0.05)
    def puts(n, bearer):
        lat = []
        for i in range(n):
            t = time.perf_counter()
            st, _ = req("PUT", "/key/app/k%d" % i, {"value": "v" * 100}, bearer)
            assert st == 200, st
            lat.append((time.perf_counter() - t) * 1000)
        lat.sort()
        return statistics.median(lat), lat[int(len(lat) * 0.99) - 1]
    N = 500
    anon = puts(N, None)
    for m, path, body in [("POST", "/auth/users", {"name": "root", "password": "rootpw"}),
                          ("PUT", "/auth/users/root/roles/root", None),
                          ("POST", "/auth/users", {"name": "alice", "password": "alicepw"}),
                          ("POST", "/auth/roles", {"name": "w"}),
                          ("POST", "/auth/roles/w/permissions", {"prefix": "app/", "access": "readwrite"}),
                          ("PUT", "/auth/users/alice/roles/w", None),
                          ("POST", "/auth/enable", None)]:
        st, data = req(m, path, body)
        assert st == 200, (path, st, data)
    tl = []
    for _ in range(30):
        t = time.perf_counter()
        st, data = req("POST", "/auth/token", {"user": "alice", "password": "alicepw"})
        assert st == 200, data
        tl.append((time.perf_counter() - t) * 1000)
    token = json.loads(data)["token"]
    user = puts(N, token)
    print("POST /auth/token (PBKDF2 verify): median %.1f ms over 30" % statistics.median(tl))
    print("PUT, auth disabled, anonymous: median %.2f ms, p99 %.2f ms (%d sequential)" % (anon[0], anon[1], N))
    print("PUT, auth enabled, as a user:  median %.2f ms, p99 %.2f ms (%d sequential)" % (user[0], user[1], N))
finally:
    p.kill(); p.wait()
    import shutil
    shutil.rmtree(d, ignore_errors=True)
