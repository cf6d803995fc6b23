#!/usr/bin/env bash
# Keeps the code readable at a glance: no source file under a crate's src/
# over 600 lines, and no production function over 80 lines (clippy's
# too_many_lines with the threshold in clippy.toml, on libraries and
# binaries only — tests may be long).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

MAX_FILE_LINES=600
big=$(find crates -path '*/src/*' -name '*.rs' -print0 | xargs -0 wc -l |
	awk -v max="$MAX_FILE_LINES" '$2 != "total" && $1 > max { print "  " $2 ": " $1 " lines" }')
if [[ -n "$big" ]]; then
	echo "check-sizes: FAILED: source files over $MAX_FILE_LINES lines:" >&2
	echo "$big" >&2
	exit 1
fi
${CARGO:-cargo} clippy --workspace --lib --bins --quiet -- -D warnings -W clippy::too_many_lines
echo "check-sizes: ok (files <= $MAX_FILE_LINES lines, functions <= 80 lines)"
