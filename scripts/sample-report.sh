#!/usr/bin/env bash
# Regenerates docs/sample-drill-report.{md,html}, the README's sample drill report, from a
# run of `lifeboat demo`: the sample is the demo's own evidence, never edited by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/lifeboat-sample.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
scripts/demo.sh --dir "$dir/demo" --quiet >/dev/null
report=$(ls -t "$dir"/demo/evidence/drill-*.md | head -1)
cp "$report" docs/sample-drill-report.md
cp "${report%.md}.html" docs/sample-drill-report.html
echo "docs/sample-drill-report.{md,html} regenerated from $(basename "${report%.md}")"
