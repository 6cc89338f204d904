#!/usr/bin/env python3
"""Vendor Terra's JSON Schemas and the OpenAPI webhook example bodies into the repository.

Usage: python3 tools/vendor_terra.py [SHARED_DIR]   (default: ../shared, relative to the repo root)

- Copies every schema reachable from WebhookEventType.yaml (all webhook events, which includes
  the six data types) into schemas/terra/, with Terra's LICENSE beside them.
- Extracts every example request body from the `webhooks:` section of
  terra-openapi/v2-bundled.yaml into schemas/terra/webhook-examples/<webhook>[-<example>].json,
  with the bundle's LICENSE beside them.

The build and the tests only read the committed copies; this script is run by hand when Terra's
contract changes (then run tools/gen_model.py and the model tests).
"""
import json
import os
import shutil
import sys

import yaml


class NoDatesLoader(yaml.SafeLoader):
    """YAML loader that keeps ISO timestamps as strings (JSON has no date type)."""


NoDatesLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def file_refs(node, out):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and not v.startswith("#"):
                out.add(v)
            else:
                file_refs(v, out)
    elif isinstance(node, list):
        for x in node:
            file_refs(x, out)


def main():
    shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared")
    src = os.path.join(shared, "terra-schemas")
    dst = os.path.join(ROOT, "schemas", "terra")
    os.makedirs(dst, exist_ok=True)
    # RecoveryLevel is not $ref-erenced but names the codes of ReadinessData.recovery_level.
    todo, seen = ["WebhookEventType.yaml", "RecoveryLevel.yaml"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        with open(os.path.join(src, name)) as f:
            refs = set()
            file_refs(yaml.load(f, Loader=NoDatesLoader), refs)
        todo.extend(sorted(refs - seen))
    for name in sorted(seen):
        shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
    shutil.copyfile(os.path.join(src, "LICENSE"), os.path.join(dst, "LICENSE"))
    print(f"vendored {len(seen)} schemas into {dst}")

    bundle = os.path.join(shared, "terra-openapi", "v2-bundled.yaml")
    with open(bundle) as f:
        api = yaml.load(f, Loader=NoDatesLoader)
    exdir = os.path.join(dst, "webhook-examples")
    os.makedirs(exdir, exist_ok=True)
    shutil.copyfile(os.path.join(shared, "terra-openapi", "LICENSE"), os.path.join(exdir, "LICENSE"))
    count = 0
    for hook, item in api["webhooks"].items():
        for method in item.values():
            media = method["requestBody"]["content"]["application/json"]
            bodies = []
            if "example" in media:
                bodies.append((hook, media["example"]))
            for ex_name, ex in (media.get("examples") or {}).items():
                bodies.append((f"{hook}-{ex_name}", ex["value"]))
            for name, body in bodies:
                with open(os.path.join(exdir, name + ".json"), "w") as out:
                    json.dump(body, out, indent=2, ensure_ascii=False)
                    out.write("\n")
                count += 1
    print(f"extracted {count} webhook example bodies into {exdir}")


if __name__ == "__main__":
    main()
