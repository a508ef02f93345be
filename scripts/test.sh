#!/usr/bin/env bash
# The whole test suite, in release mode (numeric code is 10-100x slower in debug builds). Extra arguments go to
# `swift test` (e.g. --filter UNetTests). Ends with a one-line count of passed and failed tests.
# The programs the tests run: pandoc (the report test converts Markdown to HTML and DOCX), rsvg-convert, which
# pandoc calls to put the report's SVG figures into a DOCX, and Open MPI's mpirun.
set -euo pipefail
cd "$(dirname "$0")/.."
# python3 and pip: CLIP's real vocabulary for the tokenizer test, taken from open-clip-torch's wheel (downloaded, not
# installed); without it that one test skips and says so.
# mpirun (Open MPI): the data-parallel training tests launch `diffuse train` on 2 and 3 ranks with it.
bash scripts/setup.sh pandoc=pandoc rsvg-convert=librsvg2-bin python3=python3 pip3=python3-pip mpirun=openmpi-bin
python3 scripts/clip_vocab.py .build/clip-vocab || echo "test.sh: could not write CLIP's vocabulary; the tokenizer test on it will skip" >&2
# Debian's chromium and Playwright (from PyPI, into .build/page-test: pip's --target needs no virtual environment and
# is allowed beside Debian's own Python): the page of `diffuse serve` tested in a real browser. Without them that one
# test skips and says so.
bash scripts/setup.sh chromium=chromium || echo "test.sh: could not install chromium; the page test will skip" >&2
[ -d .build/page-test/playwright ] || python3 -m pip install -q --target .build/page-test playwright \
    || echo "test.sh: could not install Playwright; the page test will skip" >&2
swift build -c release --build-tests
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
swift test -c release --skip-build --disable-swift-testing "$@" 2>&1 | tee "$log" || status=$?
summary=$(grep -E "Executed [0-9]+ tests?, with" "$log" | tail -1 || true)
if [ -n "$summary" ]; then
    total=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
    failed=$(echo "$summary" | grep -oE "[0-9]+ failures?" | grep -oE "[0-9]+" || echo 0)
    skipped=$(echo "$summary" | grep -oE "[0-9]+ tests? skipped" | grep -oE "^[0-9]+" || echo 0)
    echo "tests: $((total - failed - skipped)) passed, $failed failed, $skipped skipped"
fi
exit $status
