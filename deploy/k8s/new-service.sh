#!/usr/bin/env bash
# Adds the manifests of a domain service, copied from the user service:
#
#   bash deploy/k8s/new-service.sh meeting 50052
#
# - base/<name>/: Deployment (`huddle <name>`, gRPC on <port>, metrics on
#   9090), headless Service, ServiceAccount, HPA, PDB, NetworkPolicies
#   (callers: the gateway);
# - base/kustomization.yaml lists it; the gateway dials it
#   (HUDDLE_<NAME>_ADDR=http://<name>:<port>); prod spreads its replicas.
#
# Then `make deploy-check` tells what else disagrees with the binary (see
# deploy/README.md, "Adding a service", for the manual steps).
set -euo pipefail

usage() {
	sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit 2
}
[[ $# -eq 2 ]] || usage
NAME=$1
PORT=$2
[[ "$NAME" =~ ^[a-z][a-z0-9]*$ ]] || { echo "new-service.sh: name must be lowercase letters and digits: $NAME" >&2; exit 2; }
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "new-service.sh: port must be a number: $PORT" >&2; exit 2; }

K8S=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
DIR="$K8S/base/$NAME"
[[ ! -e "$DIR" ]] || { echo "new-service.sh: $DIR already exists" >&2; exit 1; }
UPPER=${NAME^^}
CAPITAL=${NAME^}

# The user service's files with every user-specific name, port and gRPC
# service name replaced.
substitute() {
	sed -e "s/\buser\b/$NAME/g" -e "s/USER/$UPPER/g" -e "s/UserService/${CAPITAL}Service/g" \
		-e "s/50051/$PORT/g" -e '/^# Template for every domain service/d' "$1"
}

mkdir "$DIR"
for f in "$K8S"/base/user/*.yaml; do
	substitute "$f" >"$DIR/$(basename -- "$f")"
done

# Listed in the base, after the last service.
sed -i "/^  - user$/a\\  - $NAME" "$K8S/base/kustomization.yaml"

# The gateway routes to it.
sed -i "/^              value: \"http:\/\/user:50051\"$/a\\            - name: HUDDLE_${UPPER}_ADDR\\n              value: \"http://$NAME:$PORT\"" \
	"$K8S/base/gateway/deployment.yaml"

# prod: spread its replicas like the others' (a copy of the user entry).
SPREAD="$K8S/overlays/prod/anti-affinity.yaml"
user_entry=$(awk '/^  name: user$/ { found = 1 } found' "$SPREAD" | sed '/^---$/,$d')
{
	printf -- '---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n'
	# shellcheck disable=SC2001 # needs word boundaries
	sed "s/\buser\b/$NAME/g" <<<"$user_entry"
} >>"$SPREAD"

echo "added deploy/k8s/base/$NAME (huddle $NAME on :$PORT); next:"
echo "  - other callers of $NAME: set HUDDLE_${UPPER}_ADDR in their Deployment and add them to"
echo "    both policies in base/$NAME/network-policy.yaml"
echo "  - make deploy-check"
