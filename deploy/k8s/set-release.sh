#!/usr/bin/env bash
# Pins an overlay to a released image and names its migrate Job after it:
#
#   bash deploy/k8s/set-release.sh prod 0.2.0 sha256:<64 hex>
#
# - overlays/<overlay>/kustomization.yaml: the huddle image's newTag and
#   digest (kustomize then renders `huddle@sha256:…`);
# - overlays/<overlay>/release-job.yaml: Job name migrate-<first 12 hex of
#   the digest>, a new Job per release (a Job's template is immutable).
#
# `make deploy-check` fails when the two disagree, or on a non-committed
# tag without a digest.
set -euo pipefail

usage() {
	sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit 2
}
[[ $# -eq 3 ]] || usage
OVERLAY=$1 TAG=$2 DIGEST=$3
[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "set-release.sh: bad tag: $TAG" >&2; exit 2; }
[[ "$DIGEST" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "set-release.sh: digest must be sha256:<64 hex>: $DIGEST" >&2; exit 2; }

K8S=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
DIR="$K8S/overlays/$OVERLAY"
KUST="$DIR/kustomization.yaml"
[[ -f "$KUST" && -f "$DIR/release-job.yaml" ]] || { echo "set-release.sh: $DIR lacks kustomization.yaml or release-job.yaml" >&2; exit 1; }

# The huddle entry of `images:` is `- name: huddle` followed by its fields;
# rewrite its newTag and digest, adding the digest line if missing.
awk -v tag="$TAG" -v digest="$DIGEST" '
	/^  - name: huddle$/ { inimg = 1; print; next }
	inimg && /^    (newTag|digest):/ { next }
	inimg && !/^    / { print "    newTag: " tag; print "    digest: " digest; inimg = 0 }
	{ print }
	END { if (inimg) { print "    newTag: " tag; print "    digest: " digest } }
' "$KUST" >"$KUST.tmp"
mv "$KUST.tmp" "$KUST"

sed -i "s/^  value: migrate-.*/  value: migrate-${DIGEST:7:12}/" "$DIR/release-job.yaml"
echo "overlays/$OVERLAY: huddle:$TAG@$DIGEST, Job migrate-${DIGEST:7:12}"
