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

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
for pkg in "${libraries[@]}"; do installed "$pkg" || missing+=("$pkg"); done
for i in "${!programs[@]}"; do command -v "${programs[$i]}" >/dev/null || missing+=("${packages[$i]}"); done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # A failure here is reported below, with what is still missing.
    $sudo apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || true
fi

absent=()
for pkg in "${libraries[@]}"; do installed "$pkg" || absent+=("library package $pkg"); done
for i in "${!programs[@]}"; do command -v "${programs[$i]}" >/dev/null || absent+=("program ${programs[$i]} (package ${packages[$i]})"); done
if ((${#absent[@]})); then
    echo "setup: still missing after apt-get install:" >&2
    printf '  %s\n' "${absent[@]}" >&2
    exit 1
fi
