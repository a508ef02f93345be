#!/usr/bin/env bash
# Installs the C libraries Diffuse links (Debian packages), and any packages given as arguments (test.sh: pandoc,
# for the report test), when they are missing. Run by run.sh and test.sh.
set -euo pipefail
missing=()
for pkg in libopenblas-dev zlib1g-dev libpng-dev "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
