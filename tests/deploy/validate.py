"""Validates the deployment files offline (no Docker, no cluster):

* each compose file against the Compose Specification's JSON schema, then the
  two ways of running it (ClickHouse by default; with the embedded override)
  merged as `docker compose` merges them and checked for what the schema
  cannot see: every dependency is a service that will run, every named volume
  is declared, and stats/feedback use the store the mode promises;
* every Kubernetes overlay resolved as kustomize would (resources and
  components), each manifest validated strictly against Kubernetes' OpenAPI
  schemas (`kubernetes-validate`), the operator's resources (which have no
  schema there) checked for the fields Polymeter relies on, and every Secret
  a pod reads defined in the same overlay.

Usage: python validate.py REPO COMPOSE_SCHEMA_JSON
Prints one line per check; exits non-zero on the first failure.
"""

import copy
import json
import os
import sys

import jsonschema
import kubernetes_validate
import yaml

RESET = object()


class Loader(yaml.SafeLoader):
    pass


Loader.add_constructor("!reset", lambda loader, node: RESET)


def load(path):
    with open(path) as f:
        return list(yaml.load_all(f, Loader=Loader))


def fail(message):
    print(f"FAIL {message}")
    sys.exit(1)


def plain(value):
    """The document as the schema sees it (a `!reset` key is absent)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if v is not RESET}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def merge(base, override):
    """Compose's merge: mappings merge, `!reset` removes, other values replace."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is RESET:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_compose(repo, schema_path, files, store):
    schema = json.load(open(schema_path))
    config = {}
    for name in files:
        (doc,) = load(os.path.join(repo, name))
        doc = {k: v for k, v in doc.items() if not k.startswith("x-")}
        try:
            jsonschema.validate(plain(doc), schema)
        except jsonschema.ValidationError as e:
            fail(f"{name}: {e.message} at {list(e.absolute_path)}")
        config = merge(config, doc)
    services = config["services"]
    running = {n for n, s in services.items() if not s.get("profiles")}
    volumes = set((config.get("volumes") or {}).keys())
    for name in running:
        s = services[name]
        deps = s.get("depends_on") or []
        for dep in deps if isinstance(deps, list) else deps.keys():
            if dep not in running:
                fail(f"{' + '.join(files)}: {name} depends on {dep}, which does not run")
        for v in s.get("volumes") or []:
            source = v.split(":")[0]
            if not source.startswith(("/", ".")) and source not in volumes:
                fail(f"{' + '.join(files)}: {name} mounts undeclared volume {source}")
    for name in ("stats", "feedback"):
        env = services[name].get("environment") or {}
        got = env.get("POLYMETER_STORE", "embedded")
        if not got.startswith(store):
            fail(f"{' + '.join(files)}: {name} stores in {got!r}, expected {store}")
    print(f"ok   compose {' + '.join(files)} ({store}): {sorted(running)}")


def kustomize(directory):
    """Every manifest document an overlay applies, with its file."""
    k = load(os.path.join(directory, "kustomization.yaml"))[0]
    docs = []
    for entry in (k.get("resources") or []) + (k.get("components") or []):
        path = os.path.normpath(os.path.join(directory, entry))
        if os.path.isdir(path):
            docs += kustomize(path)
        elif os.path.isfile(path):
            docs += [(path, d) for d in load(path) if d]
        else:
            fail(f"{directory}/kustomization.yaml names missing {entry}")
    return docs


OPERATOR_KINDS = {
    "ClickHouseInstallation": ["spec.configuration.clusters", "spec.configuration.users"],
    "ClickHouseKeeperInstallation": ["spec.configuration.clusters"],
}


def field(doc, dotted):
    for part in dotted.split("."):
        doc = (doc or {}).get(part)
    return doc


def secrets_read(doc):
    spec = field(doc, "spec.template.spec") or {}
    for c in spec.get("containers", []):
        for e in c.get("env", []):
            ref = field(e, "valueFrom.secretKeyRef")
            if ref:
                yield ref["name"], ref["key"]
    for v in spec.get("volumes", []):
        if "secret" in v:
            yield v["secret"]["secretName"], None


def check_overlay(directory, version):
    docs = kustomize(directory)
    seen = {}
    for path, doc in docs:
        key = (doc["kind"], doc["metadata"]["name"])
        if key in seen:
            fail(f"{directory}: {key} defined twice ({seen[key]}, {path})")
        seen[key] = path
        if doc["kind"] in OPERATOR_KINDS:
            for f in OPERATOR_KINDS[doc["kind"]]:
                if not field(doc, f):
                    fail(f"{path}: {doc['kind']} lacks {f}")
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(f"{path}: {key}: {e.message} at {list(e.path)}")
    defined = {
        doc["metadata"]["name"]: set((doc.get("stringData") or doc.get("data") or {}).keys())
        for _, doc in docs
        if doc["kind"] == "Secret"
    }
    for path, doc in docs:
        for name, key in secrets_read(doc):
            if name not in defined or (key and defined[name] and key not in defined[name]):
                fail(f"{path}: reads Secret {name}/{key}, which the overlay does not define")
    kinds = sorted(f"{k}/{n}" for k, n in seen)
    print(f"ok   kubernetes {os.path.basename(directory)}: {len(docs)} resources ({', '.join(kinds)})")
    return seen


def main():
    repo, schema = sys.argv[1], sys.argv[2]
    check_compose(repo, schema, ["docker-compose.yml"], "clickhouse://")
    check_compose(repo, schema, ["docker-compose.yml", "docker-compose.embedded.yml"], "embedded")
    version = "1.33.0"
    root = os.path.join(repo, "deploy", "kubernetes")
    overlays = {}
    for name in ("embedded", "clickhouse", "clickhouse-cluster"):
        overlays[name] = check_overlay(os.path.join(root, name), version)
    # The scale-out overlays run stats and feedback as autoscaled Deployments;
    # the embedded one keeps them as StatefulSets.
    for name in ("clickhouse", "clickhouse-cluster"):
        for svc in ("stats", "feedback"):
            for kind in ("Deployment", "HorizontalPodAutoscaler"):
                if (kind, svc) not in overlays[name]:
                    fail(f"{name}: no {kind} {svc}")
    for svc in ("stats", "feedback"):
        if ("StatefulSet", svc) not in overlays["embedded"]:
            fail(f"embedded: no StatefulSet {svc}")
    print("ok   all deployment files")


if __name__ == "__main__":
    main()
