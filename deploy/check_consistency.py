"""Keeps docker-compose.yml and deploy/kubernetes/ in step with the binary: every gatehouse
command they run must exist, and every environment variable they give it must be one that
command reads (as its --help lists them). Exits 1 naming each mismatch."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

# Read by the binary outside clap (the log filter), so absent from --help.
READ_OUTSIDE_CLAP = {"GATEHOUSE_LOG"}

binary = sys.argv[1]
problems = []
_help_cache = {}


def env_of(command):
    """The environment variables `gatehouse COMMAND` reads, or None when there is no such command."""
    if command not in _help_cache:
        run = subprocess.run(
            [binary, command, "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "1000"},
        )
        _help_cache[command] = (
            set(re.findall(r"env: ([A-Z0-9_]+)", run.stdout)) if run.returncode == 0 else None
        )
    return _help_cache[command]


def check(where, command, variables):
    known = env_of(command)
    if known is None:
        problems.append(f"{where}: `gatehouse {command}` is not a command of the binary")
        return
    for var in sorted(set(variables) - known - READ_OUTSIDE_CLAP):
        problems.append(f"{where}: `gatehouse {command}` does not read {var}")


def uses_gatehouse_image(service):
    return "build" in service or str(service.get("image", "")).startswith("gatehouse")


compose = yaml.safe_load(Path("docker-compose.yml").read_text())
for name, service in compose["services"].items():
    if not uses_gatehouse_image(service):
        continue
    command = service.get("command") or []
    if not command:
        problems.append(f"docker-compose.yml: service {name} runs the gatehouse image without a command")
        continue
    check(f"docker-compose.yml: service {name}", command[0], (service.get("environment") or {}).keys())

documents = []
for path in sorted(Path("deploy/kubernetes").glob("*.yaml")):
    documents += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d]
config_keys = {
    (d["kind"], d["metadata"]["name"]): set((d.get("data") or d.get("stringData") or {}).keys())
    for _, d in documents
    if d["kind"] in ("ConfigMap", "Secret")
}
for path, doc in documents:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
    if not pod:
        continue
    for container in pod.get("containers", []):
        if not str(container.get("image", "")).startswith("gatehouse"):
            continue
        where = f"{path}: {doc['kind']} {doc['metadata']['name']} container {container['name']}"
        args = container.get("args") or []
        if not args:
            problems.append(f"{where}: no command in args")
            continue
        variables = [e["name"] for e in container.get("env", [])]
        for e in container.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef") or e.get("valueFrom", {}).get("configMapKeyRef")
            kind = "Secret" if "secretKeyRef" in e.get("valueFrom", {}) else "ConfigMap"
            if ref and ref["key"] not in config_keys.get((kind, ref["name"]), set()):
                problems.append(f"{where}: {kind} {ref['name']} has no key {ref['key']}")
        for source in container.get("envFrom", []):
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if key in source:
                    ref = source[key]["name"]
                    if (kind, ref) not in config_keys:
                        problems.append(f"{where}: {kind} {ref} is not defined in deploy/kubernetes/")
                    variables += config_keys.get((kind, ref), set())
        check(where, args[0], variables)

for p in problems:
    print(f"deploy check: {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"deploy check: docker-compose.yml and {len(documents)} Kubernetes objects agree with {binary}")
