#!/usr/bin/env bash
# Installs what Diffuse needs when it is missing (Debian packages, with apt-get): the C libraries it links, and the
# programs given as PROGRAM=PACKAGE arguments (test.sh: the programs its tests run, such as pandoc and the
# rsvg-convert that pandoc calls for SVG figures). Then checks that everything is there, and exits 1 with the list
# of what is not, so that a missing tool stops the job at once rather than failing a test later.
# Run by run.sh and test.sh.
set -euo pipefail
libraries=(libopenblas-dev zlib1g-dev libpng-dev)
programs=()
packages=()
for spec in "$@"; do
    [[ "$spec" == *=* ]] || { echo "setup: arguments are PROGRAM=PACKAGE, got '$spec'" >&2; exit 2; }
    programs+=("${spec%%=*}")
    packages+=("${spec#*=}")
done

# The Debian packages of what is not there: libraries not installed, programs not on the PATH.
missing() {
    local pkg i
    for pkg in "${libraries[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
    done
    for i in "${!programs[@]}"; do command -v "${programs[$i]}" >/dev/null || echo "${packages[$i]}"; done
}

mapfile -t needed < <(missing)
if ((${#needed[@]})); then
    echo "setup: installing ${needed[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # A failure here is reported below, with what is still missing.
    $sudo apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null || true
    mapfile -t absent < <(missing)
    if ((${#absent[@]})); then
        echo "setup: still missing after apt-get install (Debian packages): ${absent[*]}" >&2
        exit 1
    fi
fi
