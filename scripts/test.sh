#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine or a developer box:
# installs what the end-to-end tests drive (the real distribution registry,
# skopeo, htpasswd, podman/buildah, containerd, dockerd), then runs unit tests,
# integration tests, doc tests and the benches in test mode (no timing).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have docker-registry || need_pkgs+=(docker-registry)
have skopeo || need_pkgs+=(skopeo)
have htpasswd || need_pkgs+=(apache2-utils)
have cmake || need_pkgs+=(cmake)
have openssl || need_pkgs+=(openssl)
have python3 || need_pkgs+=(python3)
have podman || need_pkgs+=(podman)
have buildah || need_pkgs+=(buildah)
have containerd || need_pkgs+=(containerd)
have dockerd || need_pkgs+=(docker.io)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# The Debian packages start their daemons; the tests start their own on free
# ports with their own state, so the system ones are not needed.
for svc in docker-registry docker containerd; do
  (systemctl stop "$svc" || service "$svc" stop) >/dev/null 2>&1 || true
done

have cargo-nextest || cargo install --locked cargo-nextest

cargo build --all-targets
cargo nextest run --no-fail-fast "$@"
cargo test --doc
cargo test --benches
# The load test's scripts run on demand, not here; check they still parse and
# that the pooled verdict's arithmetic holds.
python3 -m py_compile loadtest/driver.py loadtest/pool.py
python3 -m doctest loadtest/pool.py
