#!/usr/bin/env bash
# LiveKit's own token verifier (npm livekit-server-sdk), installed once
# into a cache dir outside the repository, like the other test tools.
# Usage: verify-token.sh API_KEY API_SECRET < token  -> the claims as JSON.
set -euo pipefail
TOOLS=${HUDDLE_LIVEKIT_SDK:-/var/tmp/huddle-livekit-sdk}
VERSION=2.19.2
HERE=$(cd "$(dirname "$0")" && pwd)
if [ ! -f "$TOOLS/node_modules/livekit-server-sdk/package.json" ] ||
   ! grep -q "\"version\": \"$VERSION\"" "$TOOLS/node_modules/livekit-server-sdk/package.json"; then
  mkdir -p "$TOOLS"
  (cd "$TOOLS" && npm install --no-audit --no-fund --silent "livekit-server-sdk@$VERSION" >&2)
fi
cp "$HERE/verify-token.mjs" "$TOOLS/verify-token.mjs"
exec node "$TOOLS/verify-token.mjs" "$@"
