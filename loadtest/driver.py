#!/usr/bin/env python3
"""Load-test driver: oci-connector vs nginx (credential-injecting proxy) vs direct.

Starts, on loopback ports chosen by the OS:
  * a fast upstream: nginx serving registry-shaped static responses that demand
    `Authorization: Bearer <token>`, plus the token endpoint `/token`;
  * nginx as a tuned reverse proxy injecting that token;
  * oci-connector (release build) with one anonymous token-auth connector;
  * optionally the real CNCF distribution registry (htpasswd), behind both proxies.
Then runs every k6 scenario against each path, measures the proxies' peak RSS
and CPU time, and writes a markdown table to results/latest.md (plus JSON).

Every process started here is stopped by PID on exit. See README.md.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pool  # loadtest/pool.py, beside this script: the paired-round arithmetic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOKEN = "fast-upstream-token-0123456789abcdef"
NAMESPACE = "bench"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
# CPU lists for `--pin SERVERS:CLIENTS` (empty: the scheduler places everything).
PIN = {"server": "", "client": ""}


def pinned(argv: list[str], role: str) -> list[str]:
    """`argv` under `taskset -c` for `role` ("server" or "client") when pinning."""
    cpus = PIN[role]
    return ["taskset", "-c", cpus, *argv] if cpus else argv


# ------------------------------------------------------------------ processes

class Processes:
    """Children we started, stopped by PID (never by name) on exit."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        atexit.register(self.stop_all)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        print(f"\nsignal {signum}: stopping", file=sys.stderr)
        sys.exit(128 + signum)  # runs atexit -> stop_all

    def start(self, name: str, argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
        out = open(log, "ab")
        p = subprocess.Popen(pinned(argv, "server"), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})}, start_new_session=True)
        out.close()
        self.procs[name] = p
        return p

    def stop(self, name: str, sig=signal.SIGTERM) -> None:
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            # nginx master: SIGTERM = fast shutdown of master and its workers.
            self.stop(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, ok: tuple[int, ...], what: str, proc: subprocess.Popen, timeout=30.0):
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} during start-up (see its log)")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status in ok:
                return
            last = f"status {r.status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise SystemExit(f"{what} not ready on port {port}: {last}")


# ------------------------------------------------------------------ /proc readings

def proc_children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces, split after ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(d.name))
    return kids


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / CLK_TCK  # utime + stime
    except OSError:
        return 0.0


@dataclass
class Measured:
    """The processes whose memory and CPU count as "the proxy" of a path."""
    pids: list[int]
    cpu0: float = 0.0

    def reset(self) -> None:
        for pid in self.pids:
            try:
                # 5: reset the peak RSS (VmHWM) to the current RSS (proc(5)).
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                pass
        self.cpu0 = sum(cpu_seconds(p) for p in self.pids)

    def peak_rss_mib(self) -> float:
        return sum(status_kib(p, "VmHWM") for p in self.pids) / 1024

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids) - self.cpu0


# ------------------------------------------------------------------ static content

@dataclass
class Content:
    manifest: bytes
    manifest_digest: str
    config_digest: str
    layer_digest: str
    big_digest: str
    big_size: int
    blob_files: dict[str, Path] = field(default_factory=dict)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_content(static: Path, big_mib: int, layer_kib: int) -> Content:
    blobs = static / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def put(data: bytes) -> str:
        d = sha256_digest(data)
        p = blobs / d
        if not p.exists():
            p.write_bytes(data)
        files[d] = p
        return d

    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": []},
    }, separators=(",", ":")).encode()
    config_digest = put(config)
    layer = hashlib.shake_256(b"oci-connector-loadtest-layer").digest(layer_kib * 1024)
    layer_digest = put(layer)

    # The big blob: random bytes, generated once and cached by size.
    meta = static / f"big-{big_mib}MiB.json"
    if meta.exists() and (blobs / json.loads(meta.read_text())["digest"]).exists():
        big_digest = json.loads(meta.read_text())["digest"]
    else:
        print(f"generating the {big_mib} MiB blob ...", flush=True)
        h = hashlib.sha256()
        tmp = blobs / "big.tmp"
        with open(tmp, "wb") as f:
            for _ in range(big_mib):
                chunk = os.urandom(MIB)
                h.update(chunk)
                f.write(chunk)
        big_digest = "sha256:" + h.hexdigest()
        tmp.rename(blobs / big_digest)
        meta.write_text(json.dumps({"digest": big_digest}))
    files[big_digest] = blobs / big_digest

    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": len(layer)}],
    }, separators=(",", ":")).encode()
    (static / "manifest.json").write_bytes(manifest)
    return Content(manifest, sha256_digest(manifest), config_digest, layer_digest, big_digest,
                   big_mib * MIB, files)


# ------------------------------------------------------------------ configs

UPSTREAM_NGINX = r"""
worker_processes @@WORKERS@@;
pid @@WORK@@/upstream.pid;
error_log @@WORK@@/logs/upstream-error.log warn;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off;
  log_format token '$msec $request_uri';
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path @@WORK@@/tmp/upstream-body;
  proxy_temp_path @@WORK@@/tmp/upstream-proxy;
  map $http_authorization $auth_ok { "Bearer @@TOKEN@@" 1; default 0; }
  server {
    listen 127.0.0.1:@@PORT@@ backlog=4096;
    root @@WORK@@/static;
    # The token endpoint: one access-log line per token request.
    location = /token {
      access_log @@WORK@@/logs/token-access.log token;
      default_type application/json;
      return 200 '{"token":"@@TOKEN@@","expires_in":3600}';
    }
@@LOCATIONS@@
  }
@@TLS_SERVER@@
}
"""

# The same registry over TLS (the token endpoint stays on the plain port).
UPSTREAM_TLS_SERVER = r"""
  server {
    listen 127.0.0.1:@@TLS_PORT@@ ssl backlog=4096;
    root @@WORK@@/static;
    ssl_certificate @@WORK@@/tls/registry.pem;
    ssl_certificate_key @@WORK@@/tls/registry.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:UPTLS:10m;
@@LOCATIONS@@
  }
"""

# What the fast upstream serves, with and without TLS.
UPSTREAM_LOCATIONS = r"""
    location = /v2/ {
      add_header Docker-Distribution-API-Version registry/2.0 always;
      if ($auth_ok = 0) {
        add_header WWW-Authenticate 'Bearer realm="http://127.0.0.1:@@PORT@@/token",service="fast"' always;
        return 401 '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}';
      }
      default_type application/json;
      return 200 '{}';
    }
    location ~ ^/v2/(?<repo>[a-z0-9._/-]+)/manifests/(?<ref>[A-Za-z0-9_.:-]+)$ {
      if ($auth_ok = 0) {
        add_header WWW-Authenticate 'Bearer realm="http://127.0.0.1:@@PORT@@/token",service="fast",scope="repository:$repo:pull"' always;
        return 401 '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}';
      }
      types { }
      default_type @@MANIFEST_TYPE@@;
      add_header Docker-Content-Digest @@MANIFEST_DIGEST@@;
      add_header Docker-Distribution-API-Version registry/2.0;
      try_files /manifest.json =404;
    }
    location ~ "^/v2/(?<repo>[a-z0-9._/-]+)/blobs/(?<digest>sha256:[a-f0-9]{64})$" {
      if ($auth_ok = 0) {
        add_header WWW-Authenticate 'Bearer realm="http://127.0.0.1:@@PORT@@/token",service="fast",scope="repository:$repo:pull"' always;
        return 401 '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}';
      }
      types { }
      default_type application/octet-stream;
      add_header Docker-Content-Digest $digest;
      add_header Docker-Distribution-API-Version registry/2.0;
      try_files /blobs/$digest =404;
    }"""

PROXY_NGINX_HEAD = r"""
worker_processes @@WORKERS@@;
pid @@WORK@@/proxy.pid;
error_log @@WORK@@/logs/proxy-nginx-error.log warn;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off;
  keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path @@WORK@@/tmp/proxy-body;
  proxy_temp_path @@WORK@@/tmp/proxy-proxy;
"""

# The credential-injecting reverse proxy, tuned as such proxies are.
PROXY_NGINX_SERVER = r"""
  upstream @@NAME@@ { server 127.0.0.1:@@UPSTREAM@@; keepalive 64; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:@@PORT@@ backlog=4096;
    client_max_body_size 0;
    location / {
      proxy_pass @@SCHEME@@://@@NAME@@;@@UPSTREAM_TLS@@
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1:@@UPSTREAM@@;
      proxy_set_header Authorization "@@AUTH@@";
      proxy_buffering on;
      proxy_buffer_size 64k;
      proxy_buffers 64 64k;
      proxy_busy_buffers_size 256k;
      proxy_max_temp_file_size 0;
    }
  }
"""

# What the proxy adds for a TLS upstream: verify it against our CA, reuse sessions.
PROXY_NGINX_UPSTREAM_TLS = """
      proxy_ssl_trusted_certificate @@CA@@;
      proxy_ssl_verify on;
      proxy_ssl_name 127.0.0.1;
      proxy_ssl_session_reuse on;"""


def nginx_proxy_server(name: str, upstream: int, port: int, auth: str, ca: Path | None = None) -> str:
    """One server block of the nginx proxy: `upstream` over TLS verified against `ca`
    when given, plain HTTP otherwise; the same tuning either way."""
    tls = fill(PROXY_NGINX_UPSTREAM_TLS, CA=ca) if ca else ""
    return fill(PROXY_NGINX_SERVER, SCHEME="https" if ca else "http", UPSTREAM_TLS=tls, NAME=name,
                UPSTREAM=upstream, PORT=port, AUTH=auth)


def make_tls(dir_: Path) -> None:
    """A CA and a certificate for 127.0.0.1 it signed (ECDSA P-256), with openssl."""
    dir_.mkdir(parents=True, exist_ok=True)
    run = lambda *argv: subprocess.run(argv, check=True, capture_output=True, cwd=dir_)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
        "-subj", "/CN=oci-connector load-test CA")
    run("openssl", "req", *ec, "-keyout", "registry.key", "-out", "registry.csr", "-subj", "/CN=127.0.0.1")
    (dir_ / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                  "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", "registry.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "registry.pem", "-days", "30", "-extfile", "ext.cnf")


def fill(template: str, **values) -> str:
    for k, v in values.items():
        template = template.replace(f"@@{k}@@", str(v))
    assert "@@" not in template, template
    return template


def connector_yaml(name: str, address: str, secret: tuple[str, str] | None, ca_pem: str | None = None) -> str:
    """A Connector (token auth, anonymous unless `secret` names a user and password),
    trusting `ca_pem` for a TLS registry when given, plus the Secrets it names."""
    spec = f"  connectorClassName: oci\n  address: {address}\n  auth:\n    name: tokenAuth\n"
    docs = []
    if secret:
        spec += f"    secretRef:\n      name: {name}-secret\n"
        docs.append(f"""apiVersion: v1
kind: Secret
metadata:
  name: {name}-secret
  namespace: {NAMESPACE}
type: cpaas.io/distribution-registry-token
stringData:
  username: {secret[0]}
  password: {secret[1]}
""")
    if ca_pem:
        spec += f"  caCertSecretRef:\n    name: {name}-ca\n"
        pem = "".join(f"    {line}\n" for line in ca_pem.strip().splitlines())
        docs.append(f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-ca\n  namespace: {NAMESPACE}\n"
                    f"stringData:\n  ca.crt: |\n{pem}")
    connector = (f"apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: {name}\n"
                 f"  namespace: {NAMESPACE}\nspec:\n{spec}")
    return "".join(f"---\n{d}" for d in [connector, *docs])


# ------------------------------------------------------------------ the real registry

REGISTRY_CONFIG = """version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: @@WORK@@/registry-data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:@@PORT@@
  secret: loadtest-not-secret
auth:
  htpasswd:
    realm: loadtest
    path: @@WORK@@/htpasswd
"""


def push_blob(port: int, auth: str, repo: str, digest: str, path: Path) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("HEAD", f"/v2/{repo}/blobs/{digest}", headers={"Authorization": auth})
    r = c.getresponse()
    r.read()
    if r.status == 200:
        return
    c.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Authorization": auth, "Content-Length": "0"})
    r = c.getresponse()
    r.read()
    if r.status != 202:
        raise SystemExit(f"registry refused an upload ({r.status})")
    loc = r.getheader("Location")
    sep = "&" if "?" in loc else "?"
    if loc.startswith("http"):
        loc = "/" + loc.split("/", 3)[3]
    size = path.stat().st_size
    with open(path, "rb") as f:
        c.request("PUT", f"{loc}{sep}digest={digest}", body=f,
                  headers={"Authorization": auth, "Content-Length": str(size),
                           "Content-Type": "application/octet-stream"})
        r = c.getresponse()
        r.read()
    if r.status != 201:
        raise SystemExit(f"registry refused blob {digest} ({r.status})")
    c.close()


def push_manifest(port: int, auth: str, repo: str, manifest: bytes) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("PUT", f"/v2/{repo}/manifests/latest", body=manifest,
              headers={"Authorization": auth, "Content-Type": MANIFEST_TYPE})
    r = c.getresponse()
    r.read()
    if r.status != 201:
        raise SystemExit(f"registry refused the manifest for {repo} ({r.status})")


# ------------------------------------------------------------------ k6

@dataclass
class Path_:
    name: str            # direct | nginx | oci-connector
    base: str
    prefix: str
    auth: str
    measured: Measured | None


@dataclass
class Row:
    scenario: str
    path: str
    reqs: int = 0
    rps: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    mibps: float = 0.0
    rss: float | None = None
    cpu: float | None = None
    errors: int = 0
    token_fetches: int = 0
    duration: float = 0.0


def median_row(rows: list[Row], key) -> Row:
    """The median run by `key`, carrying what must hold for every run: errors and
    token fetches summed, peak RSS the highest seen. A copy: the runs themselves
    stay as measured (`latest.json` keeps them for the paired rounds)."""
    row = replace(sorted(rows, key=key)[len(rows) // 2])
    row.errors = sum(r.errors for r in rows)
    row.token_fetches = sum(r.token_fetches for r in rows)
    peaks = [r.rss for r in rows if r.rss is not None]
    row.rss = max(peaks) if peaks else None
    return row


def k6_run(script: str, p: Path_, env: dict, out_dir: Path, label: str) -> dict:
    summary = out_dir / f"{label}.json"
    summary.unlink(missing_ok=True)
    full_env = {
        "BASE_URL": p.base, "PREFIX": p.prefix, "AUTH": p.auth,
        "SUMMARY_FILE": str(summary), "K6_NO_USAGE_REPORT": "true",
        # k6 is the client-side bottleneck for small requests; less GC helps it.
        "GOGC": os.environ.get("K6_GOGC", "400"),
        # The direct TLS path: k6 does not know the load test's CA.
        "K6_INSECURE_SKIP_TLS_VERIFY": "true",
        **{k: str(v) for k, v in env.items()},
    }
    cmd = pinned(["k6", "run", "--quiet", "--no-color", "--address", "", str(HERE / "k6" / script)], "client")
    log = out_dir / f"{label}.log"
    with open(log, "wb") as f:
        rc = subprocess.run(cmd, env={**os.environ, **full_env}, stdout=f, stderr=subprocess.STDOUT).returncode
    if not summary.exists():
        raise SystemExit(f"k6 {script} for {p.name} failed (rc {rc}); see {log}")
    return json.loads(summary.read_text())


def seconds(duration: str) -> int:
    """k6-style duration (`10s`, `1m`, `90`) in whole seconds."""
    d = duration.strip()
    mult = {"s": 1, "m": 60, "h": 3600}.get(d[-1:], None)
    return max(1, int(float(d[:-1]) * mult) if mult else int(float(d)))


def ab_run(p: Path_, url: str, concurrency: int, procs: int, duration: str, out_dir: Path, label: str) -> dict:
    """ApacheBench with keep-alive: a client light enough to show proxy overhead
    on small requests (k6 tops out at a few thousand req/s on two cores)."""
    runs = []
    for i in range(procs):
        csv = out_dir / f"{label}-{i}.csv"
        cmd = ["ab", "-k", "-q", "-c", str(max(1, concurrency // procs)), "-t", str(seconds(duration)),
               "-n", "100000000", "-e", str(csv), "-H", f"Accept: {MANIFEST_TYPE}"]
        if p.auth:
            cmd += ["-H", f"Authorization: {p.auth}"]
        runs.append((csv, subprocess.Popen(pinned(cmd + [url], "client"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    out = {"rps": 0.0, "reqs": 0, "bytes": 0, "errors": 0, "p50": 0.0, "p99": 0.0, "duration": 0.0}
    for csv, proc in runs:
        text, _ = proc.communicate()
        (out_dir / f"{label}.log").open("a").write(text)
        def field_(name: str) -> str:
            for line in text.splitlines():
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].split()[0]
            return "0"
        if proc.returncode != 0:
            out["errors"] += 1
        out["rps"] += float(field_("Requests per second"))
        out["reqs"] += int(field_("Complete requests"))
        out["bytes"] += int(field_("Total transferred"))
        out["errors"] += int(field_("Failed requests")) + int(field_("Non-2xx responses"))
        out["duration"] = max(out["duration"], float(field_("Time taken for tests")))
        pct = {}
        if csv.exists():
            for line in csv.read_text().splitlines()[1:]:
                k, v = line.split(",")
                pct[int(float(k))] = float(v)
        # Several ab processes: average medians, keep the worst p99.
        out["p50"] += pct.get(50, 0.0) / procs
        out["p99"] = max(out["p99"], pct.get(99, 0.0))
    return out


def ab_pair(b: "Bench", other: str, rounds: int, requests: int) -> str:
    """Two oci-connector binaries side by side: both run at once (the fast
    upstream's config, two ports), `ab -k -n` alternates between them, the order
    flipping every round. Per round: req/s and CPU per request of each; then the
    median B/A ratios. Pairing cancels the host's drift, which moves a lone
    run's CPU per request by 20-40% here; run it twice with the binaries swapped
    (and once with the same binary in both slots) to see the remaining bias."""
    conf = b.work / "conf"
    port_b = free_port()
    text = (conf / "oci-connector.yaml").read_text().replace(f":{b.oci_port}", f":{port_b}")
    (conf / "oci-connector-b.yaml").write_text(text)
    pb = b.procs.start("oci-connector-b", [other, "serve", "--config", str(conf / "oci-connector-b.yaml")],
                       b.work / "logs" / "oci-connector-b.log", env={"RUST_LOG": b.a.oci_log})
    wait_http(port_b, "/v2/", (200,), "oci-connector (B)", pb)
    assert b.oci_measured is not None
    slots = {"A": (b.oci_port, b.oci_measured.pids[0]), "B": (port_b, pb.pid)}

    def one(slot: str) -> tuple[float, float]:
        port, pid = slots[slot]
        url = f"http://127.0.0.1:{port}/v2/namespaces/{NAMESPACE}/connectors/fast/bench/repo-1/manifests/latest"
        cpu0 = cpu_seconds(pid)
        out = subprocess.run(pinned(["ab", "-k", "-q", "-c", str(b.a.small_vus), "-n", str(requests),
                                     "-H", f"Accept: {MANIFEST_TYPE}", url], "client"),
                             capture_output=True, text=True).stdout
        rps = next((float(l.split()[3]) for l in out.splitlines() if l.startswith("Requests per second")), 0.0)
        return rps, (cpu_seconds(pid) - cpu0) / requests * 1e6

    one("A"), one("B")  # warm: tokens, pooled connections
    lines = [f"A = {b.a.binary}", f"B = {other}", "round  A req/s  A us/req  B req/s  B us/req"]
    ratios = []
    for r in range(rounds):
        order = ("A", "B") if r % 2 == 0 else ("B", "A")
        got = {slot: one(slot) for slot in order}
        (ra, ca), (rb, cb) = got["A"], got["B"]
        lines.append(f"{r + 1:5d}  {ra:7.0f}  {ca:8.2f}  {rb:7.0f}  {cb:8.2f}")
        ratios.append((rb / ra if ra else 0.0, cb / ca if ca else 0.0))
    lines.append(f"median B/A: req/s {statistics.median(x for x, _ in ratios):.3f}, "
                 f"CPU per request {statistics.median(y for _, y in ratios):.3f}")
    b.procs.stop("oci-connector-b")
    return "\n".join(lines)


def metric(summary: dict, name: str, key: str, default=0.0):
    m = summary["metrics"].get(name)
    if not m:
        return default
    return m.get("values", m).get(key, default)


def token_count(log: Path) -> int:
    """Token requests for a scope. oci-connector's status checker also asks for a
    scope-less token every 30 s; that is not request traffic, so it is not counted."""
    try:
        with open(log, "rb") as f:
            return sum(1 for line in f if b"scope=" in line)
    except FileNotFoundError:
        return 0


class Bench:
    def __init__(self, args, procs: Processes):
        self.a = args
        self.procs = procs
        self.work = Path(args.work)
        self.out = Path(args.results)
        self.rows: list[Row] = []
        # Every run of every scenario by path, in round order (for paired ratios).
        self.rounds: dict[str, dict[str, list[Row]]] = {}
        self.token_log = self.work / "logs" / "token-access.log"
        self.load0 = " ".join(f"{x:.1f}" for x in os.getloadavg())

    # -------------------------------------------------------------- set-up
    def setup(self) -> None:
        for d in ("logs", "tmp", "static", "conf", "k6"):
            (self.work / d).mkdir(parents=True, exist_ok=True)
        (self.out / "k6").mkdir(parents=True, exist_ok=True)
        self.token_log.unlink(missing_ok=True)
        self.content = make_content(self.work / "static", self.a.big_mib, self.a.layer_kib)
        c = self.content
        self.up_port, self.ngx_port, self.oci_port = free_port(), free_port(), free_port()
        self.reg_port = self.ngx_real_port = self.tls_port = self.ngx_tls_port = None
        if self.a.real:
            self.reg_port, self.ngx_real_port = free_port(), free_port()
        if self.a.tls:
            self.tls_port, self.ngx_tls_port = free_port(), free_port()
            make_tls(self.work / "tls")

        # Placeholders first: the templates they insert hold placeholders of their own.
        up = fill(UPSTREAM_NGINX, TLS_SERVER=UPSTREAM_TLS_SERVER if self.a.tls else "", LOCATIONS=UPSTREAM_LOCATIONS,
                  WORKERS=self.a.nginx_workers, WORK=self.work, TOKEN=TOKEN, PORT=self.up_port,
                  TLS_PORT=self.tls_port, MANIFEST_TYPE=MANIFEST_TYPE, MANIFEST_DIGEST=c.manifest_digest)
        (self.work / "conf" / "upstream-nginx.conf").write_text(up)

        proxy = fill(PROXY_NGINX_HEAD, WORKERS=self.a.nginx_workers, WORK=self.work)
        proxy += nginx_proxy_server("fast", self.up_port, self.ngx_port, f"Bearer {TOKEN}")
        connectors = connector_yaml("fast", f"http://127.0.0.1:{self.up_port}", None)
        if self.a.real:
            self.real_auth = "Basic " + base64.b64encode(b"bench:bench-password").decode()
            proxy += nginx_proxy_server("real", self.reg_port, self.ngx_real_port, self.real_auth)
            connectors += connector_yaml("real", f"http://127.0.0.1:{self.reg_port}", ("bench", "bench-password"))
        if self.a.tls:
            proxy += nginx_proxy_server("tls", self.tls_port, self.ngx_tls_port, f"Bearer {TOKEN}",
                                        ca=self.work / "tls" / "ca.pem")
            connectors += connector_yaml("tls", f"https://127.0.0.1:{self.tls_port}", None,
                                         (self.work / "tls" / "ca.pem").read_text())
        proxy += "}\n"
        (self.work / "conf" / "proxy-nginx.conf").write_text(proxy)
        (self.work / "conf" / "connectors.yaml").write_text(connectors)
        (self.work / "conf" / "oci-connector.yaml").write_text(
            f"listen: 127.0.0.1:{self.oci_port}\n"
            f"publicUrl: http://127.0.0.1:{self.oci_port}\n"
            "connectors:\n  paths: [connectors.yaml]\n"
            "resolver: path\n"
            f"threads: {self.a.threads}\n"
            f"upstream:\n  fastLane: {'true' if self.a.fast_lane else 'false'}\n")

        self.start_upstream()
        self.start_nginx_proxy()
        self.oci_measured = None
        if "oci-connector" in self.a.paths:
            self.check_oci_config()
            self.start_oci()
        if self.a.real:
            self.start_registry()

    def nginx(self, name: str, conf: str) -> subprocess.Popen:
        return self.procs.start(name, ["nginx", "-e", str(self.work / "logs" / f"{name}-error.log"),
                                       "-p", str(self.work), "-c", str(self.work / "conf" / conf),
                                       "-g", "daemon off;"], self.work / "logs" / f"{name}.out")

    def start_upstream(self) -> None:
        p = self.nginx("upstream", "upstream-nginx.conf")
        wait_http(self.up_port, "/v2/", (401,), "upstream nginx", p)

    def start_nginx_proxy(self) -> None:
        p = self.nginx("nginx", "proxy-nginx.conf")
        wait_http(self.ngx_port, "/v2/", (200,), "nginx proxy", p)
        want = int(self.a.nginx_workers) if str(self.a.nginx_workers).isdigit() else 1
        deadline = time.time() + 5
        while len(workers := proc_children(p.pid)) < want and time.time() < deadline:
            time.sleep(0.05)
        self.nginx_measured = Measured(workers)

    def check_oci_config(self) -> None:
        r = subprocess.run([self.a.binary, "check", "--config", str(self.work / "conf" / "oci-connector.yaml")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"oci-connector check failed:\n{r.stdout}{r.stderr}")

    def start_oci(self) -> None:
        p = self.procs.start("oci-connector",
                             [self.a.binary, "serve", "--config", str(self.work / "conf" / "oci-connector.yaml")],
                             self.work / "logs" / "oci-connector.log", env={"RUST_LOG": self.a.oci_log})
        wait_http(self.oci_port, "/v2/", (200,), "oci-connector", p)
        self.oci_measured = Measured([p.pid])

    def restart_proxies(self) -> None:
        self.procs.stop("oci-connector")
        self.procs.stop("nginx")
        self.start_nginx_proxy()
        self.start_oci()

    def start_registry(self) -> None:
        shutil.rmtree(self.work / "registry-data", ignore_errors=True)
        htpasswd = subprocess.run(["htpasswd", "-Bbn", "-C", "4", "bench", "bench-password"], capture_output=True,
                                  text=True, check=True).stdout
        (self.work / "htpasswd").write_text(htpasswd)
        (self.work / "conf" / "registry.yaml").write_text(fill(REGISTRY_CONFIG, WORK=self.work, PORT=self.reg_port))
        p = self.procs.start("registry", ["docker-registry", "serve", str(self.work / "conf" / "registry.yaml")],
                             self.work / "logs" / "registry.log")
        wait_http(self.reg_port, "/v2/", (401,), "distribution registry", p)
        c = self.content
        print("pushing test content to the distribution registry ...", flush=True)
        for i in range(self.a.real_repos):
            repo = f"real/repo-{i}"
            for d in (c.config_digest, c.layer_digest):
                push_blob(self.reg_port, self.real_auth, repo, d, c.blob_files[d])
            push_manifest(self.reg_port, self.real_auth, repo, c.manifest)
        push_blob(self.reg_port, self.real_auth, "real/repo-0", c.big_digest, c.blob_files[c.big_digest])

    # -------------------------------------------------------------- paths
    def paths(self, kind="fast") -> list[Path_]:
        """The three paths to the fast upstream ("fast"), to it over TLS ("tls": the
        direct client does TLS itself, the proxies take plain HTTP and do TLS to
        the registry), or to the distribution registry ("real")."""
        if kind == "tls":
            all_ = [
                Path_("direct", f"https://127.0.0.1:{self.tls_port}", "", f"Bearer {TOKEN}", None),
                Path_("nginx", f"http://127.0.0.1:{self.ngx_tls_port}", "", "", self.nginx_measured),
                Path_("oci-connector", f"http://127.0.0.1:{self.oci_port}", f"namespaces/{NAMESPACE}/connectors/tls/",
                      "", self.oci_measured),
            ]
        elif kind == "real":
            all_ = [
                Path_("direct", f"http://127.0.0.1:{self.reg_port}", "", self.real_auth, None),
                Path_("nginx", f"http://127.0.0.1:{self.ngx_real_port}", "", "", self.nginx_measured),
                Path_("oci-connector", f"http://127.0.0.1:{self.oci_port}", f"namespaces/{NAMESPACE}/connectors/real/",
                      "", self.oci_measured),
            ]
        else:
            all_ = [
                Path_("direct", f"http://127.0.0.1:{self.up_port}", "", f"Bearer {TOKEN}", None),
                Path_("nginx", f"http://127.0.0.1:{self.ngx_port}", "", "", self.nginx_measured),
                Path_("oci-connector", f"http://127.0.0.1:{self.oci_port}", f"namespaces/{NAMESPACE}/connectors/fast/",
                      "", self.oci_measured),
            ]
        return [p for p in all_ if p.name in self.a.paths]

    def measured(self, p: Path_) -> Measured | None:
        # Re-read: a restart replaces the process.
        return {"nginx": self.nginx_measured, "oci-connector": self.oci_measured}.get(p.name)

    # -------------------------------------------------------------- scenarios
    def run(self, scenario: str, script: str, env: dict, kind="fast", before=None, reps=1) -> None:
        """Runs `script` once per path, or `reps` times with the paths interleaved
        (direct, nginx, oci, direct, ...), keeping each path's median run."""
        runs: dict[str, list[Row]] = {}
        for rep in range(reps):
            for p in self.paths(kind):
                if before:
                    before(p)
                m = self.measured(p)
                if m:
                    m.reset()
                tokens0 = token_count(self.token_log)
                label = f"{scenario}-{p.name}" + (f"-{rep}" if reps > 1 else "")
                print(f"  {scenario:<14} {p.name:<14}", end="", flush=True)
                s = k6_run(script, p, {"DURATION": self.a.duration, **env}, self.out / "k6", label)
                row = Row(scenario, p.name)
                row.duration = s["durationMs"] / 1000
                row.reqs = int(metric(s, "http_reqs", "count"))
                row.rps = row.reqs / row.duration if row.duration else 0
                row.p50 = metric(s, "http_req_duration", "med")
                row.p99 = metric(s, "http_req_duration", "p(99)")
                row.mibps = metric(s, "data_received", "count") / MIB / row.duration if row.duration else 0
                row.errors = int(metric(s, "errors", "count"))
                row.token_fetches = token_count(self.token_log) - tokens0
                if m:
                    row.rss = m.peak_rss_mib()
                    row.cpu = m.cpu() / row.duration if row.duration else 0
                runs.setdefault(p.name, []).append(row)
                print(f" {row.rps:10.0f} req/s  {row.mibps:9.1f} MiB/s  p99 {row.p99:8.2f} ms"
                      f"  rss {row.rss or 0:6.1f} MiB  err {row.errors}  tokens {row.token_fetches}", flush=True)
        key = (lambda r: r.mibps) if "blob" in scenario else (lambda r: r.rps)
        self.rounds[scenario] = runs
        for name, rows in runs.items():
            self.rows.append(median_row(rows, key))
            if len(rows) > 1:
                unit = "MiB/s" if "blob" in scenario else "req/s"
                print(f"  {scenario:<14} {name:<14} median {key(self.rows[-1]):10.1f} {unit}"
                      f" (runs: {', '.join(f'{key(r):.0f}' for r in rows)})", flush=True)

    def run_ab(self, scenario: str, repo: str, kind="fast") -> None:
        """Interleaves AB_REPS short runs per path and keeps each path's median run:
        small-request figures on a shared 2-core machine are noisy."""
        runs: dict[str, list[Row]] = {}
        for rep in range(self.a.ab_reps):
            for p in self.paths(kind):
                m = self.measured(p)
                if m:
                    m.reset()
                tokens0 = token_count(self.token_log)
                url = f"{p.base}/v2/{p.prefix}{repo}/manifests/latest"
                r = ab_run(p, url, self.a.small_vus, self.a.ab_procs, self.a.duration, self.out / "k6",
                           f"{scenario}-{p.name}-{rep}")
                row = Row(scenario, p.name, reqs=r["reqs"], rps=r["rps"], p50=r["p50"], p99=r["p99"],
                          errors=r["errors"], duration=r["duration"])
                row.mibps = r["bytes"] / MIB / row.duration if row.duration else 0
                row.token_fetches = token_count(self.token_log) - tokens0
                if m:
                    row.rss = m.peak_rss_mib()
                    row.cpu = m.cpu() / row.duration if row.duration else 0
                runs.setdefault(p.name, []).append(row)
        self.rounds[scenario] = runs
        for name, rows in runs.items():
            row = median_row(rows, lambda r: r.rps)
            self.rows.append(row)
            spread = ", ".join(f"{r.rps:.0f}" for r in sorted(rows, key=lambda r: r.rps))
            print(f"  {scenario:<14} {name:<14} {row.rps:10.0f} req/s (runs: {spread})  p99 {row.p99:8.2f} ms"
                  f"  rss {row.rss or 0:6.1f} MiB  err {row.errors}  tokens {row.token_fetches}", flush=True)

    def scenarios(self) -> None:
        a, c = self.a, self.content
        common = {"MANIFEST_DIGEST": c.manifest_digest}
        wanted = set(a.scenarios)
        print(f"warming up ({a.repos} repositories per path) ...", flush=True)
        for p in self.paths():
            k6_run("warm.js", p, {"REPOS": a.repos, "VUS": a.small_vus, **common}, self.out / "k6", f"warm-{p.name}")
        if "manifests" in wanted:
            self.run("manifests", "manifests.js", {"VUS": a.small_vus, "REPOS": a.repos, **common},
                     reps=a.k6_reps)
        if "manifests-ab" in wanted and shutil.which("ab"):
            self.run_ab("manifests-ab", "bench/repo-1")
        if "cold" in wanted:
            def restart(p: Path_):
                if p.name == "oci-connector":
                    self.procs.stop("oci-connector")
                    self.start_oci()
                elif p.name == "nginx":
                    self.procs.stop("nginx")
                    self.start_nginx_proxy()
            self.run("cold", "cold.js", {"VUS": a.cold_vus, "REPOS": a.cold_repos,
                                         "REPO_PREFIX": f"bench/cold-{int(time.time())}-", **common},
                     before=restart)
            # The restarted proxies need warm tokens again for what follows.
            for p in self.paths():
                k6_run("warm.js", p, {"REPOS": a.repos, "VUS": a.small_vus, **common}, self.out / "k6",
                       f"rewarm-{p.name}")
        for vus in a.blob_vus:
            name = f"blob-{vus}"
            if "blob" not in wanted and name not in wanted:
                continue
            iters = a.blob1_iterations if vus == 1 else 1
            self.run(name, "blob.js", {"VUS": vus, "ITERATIONS": iters, "BLOB_DIGEST": c.big_digest,
                                       "REPOS": a.repos}, reps=a.blob_reps)
        if "mixed" in wanted:
            self.run("mixed", "mixed.js", {"VUS": a.mixed_vus, "REPOS": min(a.repos, 50),
                                           "CONFIG_DIGEST": c.config_digest, "LAYER_DIGEST": c.layer_digest,
                                           **common}, reps=a.k6_reps)
        if a.tls and "tls" in wanted:
            # The proxies' first TLS handshakes and tokens belong to no figure.
            for p in self.paths("tls"):
                k6_run("warm.js", p, {"REPOS": a.repos, "VUS": a.small_vus, **common}, self.out / "k6",
                       f"warm-tls-{p.name}")
            if shutil.which("ab"):
                self.run_ab("tls-manifests-ab", "bench/repo-1", kind="tls")
            for vus in (1, 32):
                self.run(f"tls-blob-{vus}", "blob.js", {"VUS": vus, "ITERATIONS": a.blob1_iterations if vus == 1 else 1,
                                                        "BLOB_DIGEST": c.big_digest, "REPOS": a.repos},
                         kind="tls", reps=a.blob_reps)
        if a.real:
            real = {"REPO_PREFIX": "real/repo-", "MANIFEST_DIGEST": c.manifest_digest}
            for p in self.paths("real"):
                k6_run("warm.js", p, {"REPOS": a.real_repos, "VUS": 4, **real}, self.out / "k6",
                       f"warm-real-{p.name}")
            self.run("real-manifests", "manifests.js", {"VUS": a.small_vus, "REPOS": a.real_repos, **real},
                     kind="real")
            self.run("real-blob-1", "blob.js", {"VUS": 1, "ITERATIONS": 1, "BLOB_DIGEST": c.big_digest,
                                                "REPOS": 1, **real}, kind="real")

    # -------------------------------------------------------------- report
    def rounds_json(self) -> dict[str, dict[str, list[dict]]]:
        """Every run of every scenario by path, as `latest.json` keeps them and
        `pool.py` reads them."""
        return {s: {p: [vars(r) for r in rows] for p, rows in runs.items()} for s, runs in self.rounds.items()}

    def report(self) -> str:
        a = self.a
        by = {(r.scenario, r.path): r for r in self.rows}
        scenarios = list(dict.fromkeys(r.scenario for r in self.rows))
        blobish = lambda s: "blob" in s
        lines = [
            "| scenario | path | req/s | p50 ms | p99 ms | MiB/s | peak RSS MiB | proxy CPU | errors | token fetches "
            "| oci/nginx | oci/direct | p99 added ms |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        checks = []
        # oci/nginx within each round: the paths run back to back in a round, so
        # the host's drift between rounds (20-40% here) cancels out of each ratio.
        pairs = {s: pool.paired_ratios(runs, "mibps" if blobish(s) else "rps")
                 for s, runs in self.rounds_json().items()
                 if len(runs.get("oci-connector", [])) > 1 and runs.get("nginx")}
        vs_nginx = lambda s, ratio: f"{ratio:.2f}x" + (f" ({pool.summary(pairs[s])})" if s in pairs else "")
        for s in scenarios:
            key = (lambda r: r.mibps) if blobish(s) else (lambda r: r.rps)
            for path in ("direct", "nginx", "oci-connector"):
                r = by.get((s, path))
                if not r:
                    continue
                ratio_n = ratio_d = added = ""
                if path == "oci-connector":
                    n, d = by.get((s, "nginx")), by.get((s, "direct"))
                    if n and key(n):
                        ratio_n = f"{key(r) / key(n):.2f}x"
                    if d and key(d):
                        ratio_d = f"{key(r) / key(d):.2f}x"
                    if d:
                        added = f"{r.p99 - d.p99:+.2f}"
                rss = f"{r.rss:.1f}" if r.rss is not None else "-"
                cpu = f"{r.cpu * 100:.0f}%" if r.cpu is not None else "-"
                lines.append(
                    f"| {s} | {path} | {r.rps:,.0f} | {r.p50:.2f} | {r.p99:.2f} | {r.mibps:,.1f} | {rss} | {cpu} "
                    f"| {r.errors} | {r.token_fetches} | {ratio_n} | {ratio_d} | {added} |")
            o, n, d = by.get((s, "oci-connector")), by.get((s, "nginx")), by.get((s, "direct"))
            if not o:
                continue
            # The targets are for the plain fast upstream; real-* and tls-* rows inform.
            if blobish(s) and not s.startswith(("real", "tls")):
                if n:
                    checks.append((f"{s}: MiB/s >= 1.0x nginx", o.mibps >= n.mibps, vs_nginx(s, o.mibps / n.mibps)))
                if d:
                    checks.append((f"{s}: MiB/s >= 0.85x direct", o.mibps >= 0.85 * d.mibps,
                                   f"{o.mibps / d.mibps:.2f}x"))
                if s == "blob-64":
                    checks.append(("blob-64: peak RSS <= 64 MiB", (o.rss or 0) <= 64, f"{o.rss:.1f} MiB"))
            if s == "manifests-ab" or (s == "manifests" and not by.get(("manifests-ab", "oci-connector"))):
                if n:
                    checks.append((f"{s}: req/s >= 1.0x nginx", o.rps >= n.rps, vs_nginx(s, o.rps / n.rps)))
                if d:
                    checks.append((f"{s}: p99 added <= 1 ms", o.p99 - d.p99 <= 1.0, f"{o.p99 - d.p99:+.2f} ms"))
            if s == "cold":
                checks.append((f"cold: token fetches = {a.cold_repos} distinct scopes",
                               o.token_fetches == a.cold_repos, str(o.token_fetches)))
            checks.append((f"{s}: zero errors", o.errors == 0, str(o.errors)))

        machine = machine_line()
        head = [
            "# oci-connector load test",
            "",
            f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {machine}",
            f"k6 {k6_version()}, {nginx_version()}; oci-connector threads={a.threads} fastLane={str(a.fast_lane).lower()} RUST_LOG={a.oci_log}, "
            f"nginx worker_processes={a.nginx_workers}; "
            + (f"pinned: servers on CPU {PIN['server']}, k6/ab on CPU {PIN['client']}; " if a.pin else "")
            + f"duration {a.duration} per timed scenario; "
            f"small VUs {a.small_vus}, repositories {a.repos}, cold {a.cold_vus} VUs / {a.cold_repos} repositories, "
            f"blob {a.big_mib} MiB (median of {a.blob_reps} interleaved runs; blob-1 downloads it {a.blob1_iterations} times per run), mixed VUs {a.mixed_vus}; "
            f"manifests and mixed: median of {a.k6_reps} interleaved runs; "
            f"manifests-ab: ab -k, median of {a.ab_reps} runs. "
            f"Everything on loopback, one machine; load average before/after: {self.load0} / "
            f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}.",
            "",
        ]
        target = ["", "## Targets", "", "| target | met | value |", "|---|---|---|"]
        target += [f"| {t} | {'yes' if ok else '**no**'} | {v} |" for t, ok, v in checks]
        if pairs:
            target += ["", "## Paired rounds", "",
                       "oci-connector/nginx within each round of interleaved runs (the median rows above compare "
                       "medians; these ratios cancel the host's drift between rounds).", "",
                       "| scenario | oci/nginx by round | median | oci ahead |", "|---|---|---:|---:|"]
            target += [f"| {s} | {' '.join(f'{x:.2f}' for x in r)} | {statistics.median(r):.2f}x "
                       f"| {pool.won(r)} of {len(r)} |" for s, r in pairs.items()]
        notes = [
            "",
            "req/s counts completed HTTP requests; MiB/s is bytes received by k6 over the scenario's wall time;",
            "p50/p99 are k6 `http_req_duration`; peak RSS is VmHWM (reset before each run; nginx: sum of workers);",
            "proxy CPU is CPU time of the proxy processes over wall time (100% = one core); token fetches are",
            "requests at the fast upstream's token endpoint during the run. Ratios compare oci-connector with the",
            "same scenario's nginx and direct rows (MiB/s for blob scenarios, req/s otherwise).",
        ]
        return "\n".join(head + lines + target + notes) + "\n"


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = status_total_mem()
    return f"{os.cpu_count()} CPUs ({cpu}), {mem} GiB RAM, Linux {os.uname().release}"


def status_total_mem() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024)
    return 0


def k6_version() -> str:
    try:
        return subprocess.run(["k6", "version"], capture_output=True, text=True).stdout.split()[1]
    except (OSError, IndexError):
        return "?"


def nginx_version() -> str:
    r = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    return r.stderr.strip().split(": ", 1)[-1]


def main() -> None:
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=env("OCI_BIN", str(ROOT / "target" / "release" / "oci-connector")))
    ap.add_argument("--work", default=str(HERE / "work"))
    ap.add_argument("--results", default=str(HERE / "results"))
    ap.add_argument("--duration", default=env("DURATION", "10s"), help="per timed scenario (k6 duration)")
    ap.add_argument("--threads", type=int, default=int(env("THREADS", "2")), help="oci-connector threads")
    ap.add_argument("--nginx-workers", default=env("NGINX_WORKERS", "2"))
    ap.add_argument("--fast-lane", action=argparse.BooleanOptionalAction, default=env("FAST_LANE", "1") != "0",
                    help="oci-connector's upstream.fastLane (--no-fast-lane: Pingora's general path for every request)")
    ap.add_argument("--oci-log", default=env("OCI_LOG", "warn"), help="RUST_LOG for oci-connector")
    ap.add_argument("--small-vus", type=int, default=int(env("SMALL_VUS", "16")))
    ap.add_argument("--repos", type=int, default=int(env("REPOS", "1000")))
    ap.add_argument("--cold-vus", type=int, default=int(env("COLD_VUS", "200")))
    ap.add_argument("--cold-repos", type=int, default=int(env("COLD_REPOS", "20")))
    ap.add_argument("--blob-vus", default=env("BLOB_VUS", "1,32,64"), help="comma-separated concurrencies")
    ap.add_argument("--blob1-iterations", type=int, default=int(env("BLOB1_ITERATIONS", "16")))
    ap.add_argument("--big-mib", type=int, default=int(env("BIG_MIB", "512")))
    ap.add_argument("--layer-kib", type=int, default=int(env("LAYER_KIB", "2048")))
    ap.add_argument("--mixed-vus", type=int, default=int(env("MIXED_VUS", "32")))
    ap.add_argument("--paths", default=env("PATHS", "direct,nginx,oci-connector"))
    ap.add_argument("--scenarios", default=env("SCENARIOS", "manifests,manifests-ab,cold,blob,mixed,tls"),
                    help="manifests, manifests-ab, cold, blob (all of --blob-vus) or blob-N, mixed, "
                         "tls (tls-manifests-ab, tls-blob-1, tls-blob-32 against the upstream over TLS)")
    ap.add_argument("--ab-procs", type=int, default=int(env("AB_PROCS", "1")),
                    help="ab processes for manifests-ab (ab is single-threaded)")
    ap.add_argument("--k6-reps", type=int, default=int(env("K6_REPS", "5")),
                    help="interleaved runs per path of the timed k6 scenarios (manifests, mixed); the median is reported")
    ap.add_argument("--blob-reps", type=int, default=int(env("BLOB_REPS", "3")),
                    help="interleaved runs per path of each blob scenario; the median is reported")
    ap.add_argument("--ab-reps", type=int, default=int(env("AB_REPS", "7")),
                    help="interleaved manifests-ab runs per path; the median is reported")
    ap.add_argument("--real", action=argparse.BooleanOptionalAction, default=env("REAL", "1") != "0",
                    help="also measure the real distribution registry (htpasswd)")
    ap.add_argument("--pin", default=env("PIN", ""), metavar="SERVERS:CLIENTS",
                    help="CPU lists for taskset, e.g. 0:1 runs the upstream, both proxies and the registry on "
                         "CPU 0 and k6/ab on CPU 1 (default: no pinning, the scheduler places everything)")
    ap.add_argument("--tls", action=argparse.BooleanOptionalAction, default=env("TLS", "1") != "0",
                    help="also serve the fast upstream over TLS (needed by the tls scenarios)")
    ap.add_argument("--real-repos", type=int, default=int(env("REAL_REPOS", "20")))
    ap.add_argument("--ab-pair", metavar="BINARY_B", default=env("AB_PAIR", ""),
                    help="instead of the scenarios: compare --binary (A) with BINARY_B under ab, both running, "
                         "alternating rounds (see ab_pair)")
    ap.add_argument("--pair-rounds", type=int, default=int(env("PAIR_ROUNDS", "12")))
    ap.add_argument("--pair-requests", type=int, default=int(env("PAIR_REQUESTS", "100000")))
    a = ap.parse_args()
    a.blob_vus = [int(v) for v in a.blob_vus.split(",") if v]
    a.paths = a.paths.split(",")
    a.scenarios = a.scenarios.split(",")
    if a.pin:
        servers, sep, clients = a.pin.partition(":")
        if not (sep and servers and clients):
            raise SystemExit(f"--pin {a.pin!r}: want SERVERS:CLIENTS, e.g. 0:1")
        PIN.update(server=servers, client=clients)
    if a.ab_pair:
        a.real, a.tls, a.paths = False, False, ["oci-connector"]
    if a.real and not shutil.which("docker-registry"):
        print("docker-registry not installed: skipping the real-registry rows", file=sys.stderr)
        a.real = False

    procs = Processes()
    b = Bench(a, procs)
    t0 = time.time()
    b.setup()
    print(f"upstream :{b.up_port}  nginx :{b.ngx_port}  oci-connector :{b.oci_port}"
          + (f"  registry :{b.reg_port}  nginx(registry) :{b.ngx_real_port}" if a.real else ""), flush=True)
    if a.ab_pair:
        print(ab_pair(b, a.ab_pair, a.pair_rounds, a.pair_requests))
        return
    b.scenarios()
    table = b.report()
    (b.out / "latest.md").write_text(table)
    (b.out / "latest.json").write_text(json.dumps(
        {"rows": [r.__dict__ for r in b.rows],
         "rounds": b.rounds_json()},
        indent=1))
    print()
    print(table)
    print(f"written to {b.out / 'latest.md'} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
