#!/usr/bin/env bash
# Adds the manifests of a domain service, copied from the user service:
#
#   bash deploy/k8s/new-service.sh chat 50053 gateway,meeting
#
# - base/<name>/: Deployment (`huddle <name>`, gRPC on <port>, metrics on
#   9090, init container waiting for migrations, liveness/readiness probes,
#   preStop, memory request = limit), headless Service, ServiceAccount, HPA
#   (with behavior), PDB (AlwaysAllow), NetworkPolicies admitting exactly
#   the callers given (default: gateway) and the monitoring namespace;
# - base/kustomization.yaml lists it; each caller dials it
#   (HUDDLE_<NAME>_ADDR=http://<name>:<port>); prod spreads its replicas
#   (matchLabelKeys); the PodMonitor, alerts and dashboard select it by label.
#
# Then `make deploy-check` tells what else disagrees with the binary (see
# deploy/README.md, "Adding a service", for the manual steps).
set -euo pipefail

usage() {
	sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit 2
}
[[ $# -eq 2 || $# -eq 3 ]] || usage
NAME=$1
PORT=$2
CALLERS=${3:-gateway}
[[ "$CALLERS" =~ ^[a-z][a-z0-9]*(,[a-z][a-z0-9]*)*$ ]] || { echo "new-service.sh: callers: comma-separated names: $CALLERS" >&2; exit 2; }
[[ "$NAME" =~ ^[a-z][a-z0-9]*$ ]] || { echo "new-service.sh: name must be lowercase letters and digits: $NAME" >&2; exit 2; }
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "new-service.sh: port must be a number: $PORT" >&2; exit 2; }

K8S=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
DIR="$K8S/base/$NAME"
[[ ! -e "$DIR" ]] || { echo "new-service.sh: $DIR already exists" >&2; exit 1; }
UPPER=${NAME^^}
CAPITAL=${NAME^}

# The user service's files with every user-specific name, port and gRPC
# service name replaced.
# (The caller list first: it names other services, which must survive the
# renaming.)
substitute() {
	sed -e "s/values: \[[a-z, ]*\]/values: [${CALLERS//,/, }]/" \
		-e "/values: \[/!s/\buser\b/$NAME/g" -e "/values: \[/!s/USER/$UPPER/g" \
		-e "s/UserService/${CAPITAL}Service/g" \
		-e "s/50051/$PORT/g" -e '/^# Template for every domain service/d' "$1"
}

mkdir "$DIR"
for f in "$K8S"/base/user/*.yaml; do
	substitute "$f" >"$DIR/$(basename -- "$f")"
done

# Listed in the base, after the last service.
sed -i "/^  - user$/a\\  - $NAME" "$K8S/base/kustomization.yaml"

# Each caller dials it: its address goes first in the caller's `env:`.
for caller in ${CALLERS//,/ }; do
	deployment="$K8S/base/$caller/deployment.yaml"
	[[ -f "$deployment" ]] || { echo "new-service.sh: caller $caller has no $deployment" >&2; exit 1; }
	awk -v var="HUDDLE_${UPPER}_ADDR" -v url="http://$NAME:$PORT" '
		!done && /^          env:$/ && prev !~ /initContainers|wait-for-migrations/ && incontainers {
			print; print "            - name: " var; print "              value: \"" url "\""; done = 1; next
		}
		/^      containers:$/ { incontainers = 1 }
		{ prev = $0; print }
	' "$deployment" >"$deployment.tmp"
	mv "$deployment.tmp" "$deployment"
done

# prod: spread its replicas like the others' (a copy of the user entry).
SPREAD="$K8S/overlays/prod/anti-affinity.yaml"
user_entry=$(awk '/^  name: user$/ { found = 1 } found' "$SPREAD" | sed '/^---$/,$d')
{
	printf -- '---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n'
	# shellcheck disable=SC2001 # needs word boundaries
	sed "s/\buser\b/$NAME/g" <<<"$user_entry"
} >>"$SPREAD"

echo "added deploy/k8s/base/$NAME (huddle $NAME on :$PORT, called by $CALLERS); next:"
echo "  - the services $NAME calls: set their HUDDLE_<X>_ADDR in base/$NAME/deployment.yaml and add"
echo "    $NAME to the caller lists of both policies in base/<x>/network-policy.yaml"
echo "  - its migrations: add them to \`huddle migrate\` (crates/huddle/src/setup_cmds.rs)"
echo "  - make deploy-check"
