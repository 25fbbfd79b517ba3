# Shared helpers for scripts/*: start the services and install the peers that tests need.
# Every function is idempotent: it does nothing when what it provides is already there.

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

ensure_postgres() {
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then return; fi
  step "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
  for _ in $(seq 1 50); do pg_isready -h 127.0.0.1 -p 5432 -q && return; sleep 0.2; done
  echo "PostgreSQL did not become ready on 127.0.0.1:5432" >&2; exit 1
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return; fi
  step "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return; sleep 0.2; done
  echo "Redis did not become ready on 127.0.0.1:6379" >&2; exit 1
}

# The real MCP peers (TypeScript SDK client, server-everything, conformance suite) live in
# tests/peers with a lockfile; `npm ci` installs exactly what was tested.
ensure_node_peers() {
  [[ -f tests/peers/package-lock.json ]] || return 0
  if [[ ! -d tests/peers/node_modules ]] || [[ tests/peers/package-lock.json -nt tests/peers/node_modules/.package-lock.json ]]; then
    step "installing MCP test peers from npm"
    (cd tests/peers && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# Schema validators for the deployment files, from PyPI, in a virtualenv under target/.
ensure_deploy_checkers() {
  local venv=target/deploy-venv
  if [[ ! -x "$venv/bin/kubernetes-validate" || ! -x "$venv/bin/check-jsonschema" ]]; then
    step "installing the deployment checkers from PyPI"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      check-jsonschema==0.39.0 kubernetes-validate==1.37.0 PyYAML==6.0.2
  fi
}
