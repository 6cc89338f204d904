#!/usr/bin/env python3
"""Generate the typed Terra model (src/model/generated/*.rs) from the vendored JSON Schemas.

Usage: python3 tools/gen_model.py        (reads schemas/terra/, rewrites src/model/generated/)

Every object schema reachable from the six data types (Activity, Body, Daily, Menstruation,
Nutrition, Sleep) becomes one `terra_struct!` with every property under Terra's own name; every
numeric `oneOf`/`enum` schema becomes an open `terra_code!`. The webhook envelopes are generated
from the *Event.yaml schemas. The output folder holds nothing else, and every file in it starts
with an @generated line: change this script (or the hand-written macros in src/model/macros.rs),
never the generated files. CI regenerates them and fails on any difference.

Type mapping: number -> f64, integer -> Integer (lenient: 7902, 7902.0, keeps 7902.5),
boolean -> bool, string -> String (Timestamp when the schema says it is an ISO 8601 time/date),
numeric enum -> open code type, RecordFloat -> Contributors, [number] -> Vec<Option<f64>>.
Every data-type field is optional (Terra sends null or omits nearly everything).
"""
import os
import re
import subprocess

import yaml


class NoDatesLoader(yaml.SafeLoader):
    pass


NoDatesLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMAS = os.path.join(ROOT, "schemas", "terra")
OUT = os.path.join(ROOT, "src", "model", "generated")

DATA_TYPES = ["Activity", "Body", "Daily", "Menstruation", "Nutrition", "Sleep"]
FILE_OF_ROOT = {n: n.lower() for n in DATA_TYPES}

# Envelope schemas -> Rust struct name (AuthSuccessEvent also carries the legacy error form).
EVENTS = {
    "ActivityEvent": "ActivityEvent",
    "BodyEvent": "BodyEvent",
    "DailyEvent": "DailyEvent",
    "MenstruationEvent": "MenstruationEvent",
    "NutritionEvent": "NutritionEvent",
    "SleepEvent": "SleepEvent",
    "AthleteEvent": "AthleteEvent",
    "AuthSuccessEvent": "AuthEvent",
    "AuthErrorEvent": "AuthCancelledEvent",
    "DeauthEvent": "DeauthEvent",
    "UserReauthEvent": "UserReauthEvent",
    "AccessRevokedEvent": "AccessRevokedEvent",
    "ConnectionErrorEvent": "ConnectionErrorEvent",
    "PermissionChangeEvent": "PermissionChangeEvent",
    "LargeRequestProcessingEvent": "LargeRequestProcessingEvent",
    "LargeRequestSendingEvent": "LargeRequestSendingEvent",
    "S3PayloadEvent": "S3PayloadEvent",
    "PlannedWorkoutEvent": "PlannedWorkoutEvent",
    "HormoneEvent": "HormoneEvent",
    "HealthObservationEvent": "HealthObservationEvent",
    "LabReportCompletedEvent": "LabReportCompletedEvent",
    "LabReportFailedEvent": "LabReportFailedEvent",
}
# The legacy `auth` error form (status "error") carries these AuthErrorEvent fields too.
EXTRA_PROPS = {"AuthSuccessEvent": ["AuthErrorEvent"]}
# Schema numbers that are really enumerations (the enum schema exists but is not referenced).
TYPE_OVERRIDES = {("ReadinessData", "recovery_level"): "RecoveryLevel"}
# Fields that must be present for the record to make sense; everything else is optional.
REQUIRED = {("TerraUser", "user_id")}
REQUIRED_ENVELOPE_FIELDS = {"user", "new_user", "data"}
# The legacy `auth` error form may come without a user: keep it optional there.
OPTIONAL_USER = {"AuthSuccessEvent"}
DESCRIPTIONS = {
    "AuthSuccessEvent": "Authentication event (`type: auth`): the success form, and the legacy error form with `status: \"error\"`.",
}

RUST_KEYWORDS = {"type", "ref", "match", "move", "fn", "impl", "loop", "mod", "use", "where", "self", "super", "crate", "struct", "enum", "trait", "static", "const", "box", "in", "as", "async", "await", "dyn"}


def load_all():
    out = {}
    for f in os.listdir(SCHEMAS):
        if f.endswith(".yaml"):
            with open(os.path.join(SCHEMAS, f)) as fh:
                out[f[:-5]] = yaml.load(fh, Loader=NoDatesLoader)
    return out


S = load_all()


def ref_name(ref):
    return ref[:-5] if not ref.startswith("#") else ref


def refs_of(node, out):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and not v.startswith("#"):
                out.add(ref_name(v))
            else:
                refs_of(v, out)
    elif isinstance(node, list):
        for x in node:
            refs_of(x, out)


def reachable(root):
    seen, todo = set(), [root]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        r = set()
        refs_of(S[n].get("properties", {}), r)
        for a, b in TYPE_OVERRIDES.items():
            if a[0] == n:
                r.add(b)
        todo.extend(r)
    return seen


def is_object(n):
    return "properties" in S[n]


def is_code(n):
    s = S[n]
    return ("oneOf" in s and all("const" in x for x in s["oneOf"])) or "enum" in s


def is_string_code(n):
    s = S[n]
    vals = [x["const"] for x in s["oneOf"]] if "oneOf" in s else s["enum"]
    return all(isinstance(v, str) for v in vals)


MODELLED = set()
for root in DATA_TYPES:
    MODELLED |= reachable(root)
MODELLED |= {"TerraUser"}


# Words whose final period does not end a sentence.
ABBREVIATIONS = {"e.g.", "i.e.", "etc.", "vs.", "approx.", "cf.", "incl."}


def first_sentence(text):
    """Text up to the end of its first sentence: a '.', '!' or '?' followed by a space (or the
    end), outside parentheses, that does not close an abbreviation such as "e.g." or "i.e."."""
    depth = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch in ".!?" and depth == 0 and (i + 1 == len(text) or text[i + 1].isspace()):
            word = text[: i + 1].rsplit(" ", 1)[-1].lstrip("(").lower()
            if word not in ABBREVIATIONS:
                return text[: i + 1]
    return text


def doc_line(text, limit=160):
    if not text:
        return None
    text = first_sentence(" ".join(str(text).split()))
    if len(text) > limit:
        text = text[: limit - 1].rsplit(" ", 1)[0] + "…"
    if not text.endswith((".", "…", "!", "?")):
        text += "."
    return text


TIME_NAME = re.compile(r"(^|_)(time|timestamp|date|day)$|_at$|^last_webhook_update$|_window_(start|end)$|^fertility_window_")


def is_time_string(name, prop):
    if name == "version":  # "2022-03-16" is an API version label, not a date
        return False
    desc = (prop.get("description") or "")
    if "ISO8601" in desc or "ISO 8601" in desc or "RFC3339" in desc or prop.get("format") in ("date-time", "date"):
        return True
    for alt in prop.get("anyOf", []):
        if alt.get("format") in ("date-time", "date"):
            return True
    ex = prop.get("examples") or []
    if ex and isinstance(ex[0], str) and re.match(r"^\d{4}-\d{2}-\d{2}", ex[0]):
        return True
    return bool(TIME_NAME.search(name))


def non_null(prop):
    """The non-null alternative of a property (anyOf [X, null] -> X)."""
    if "anyOf" in prop:
        alts = [a for a in prop["anyOf"] if a.get("type") != "null"]
        if len(alts) == 1:
            merged = dict(alts[0])
            for k in ("description", "examples"):
                if k in prop:
                    merged.setdefault(k, prop[k])
            return merged
        return None  # a genuine union: keep it raw
    return prop


def rust_type(owner, name, prop, envelope):
    if (owner, name) in TYPE_OVERRIDES:
        return TYPE_OVERRIDES[(owner, name)]
    p = non_null(prop)
    if p is None:
        return "Value"
    if "$ref" in p:
        r = ref_name(p["$ref"])
        if r == "#/$defs/RecordFloat":
            return "Contributors"
        if r in MODELLED:
            return r
        return "Value"  # kept raw (athlete, planned workouts, hormones, observations, lab reports)
    t = p.get("type")
    if t == "number":
        return "f64"
    if t == "integer":
        return "Integer"
    if t == "boolean":
        return "bool"
    if t == "string":
        return "Timestamp" if is_time_string(name, p) else "String"
    if t == "array":
        items = p.get("items")
        if items is None:  # prefixItems tuples (coordinates) of nullable numbers
            return "Vec<Option<f64>>"
        inner = rust_type(owner, name + "[]", {"anyOf": [items]}, envelope) if "$ref" in items else None
        if inner is None:
            it = items.get("type")
            if it == "number":
                return "Vec<Option<f64>>"
            inner = rust_type(owner, name + "[]", items, envelope)
        return f"Vec<{inner}>"
    if t == "object":
        return "Value"
    return "Value"


def field_ident(name):
    return "r#" + name if name in RUST_KEYWORDS else name


def props_of(n):
    props = dict(S[n].get("properties", {}))
    for extra in EXTRA_PROPS.get(n, []):
        for k, v in S[extra]["properties"].items():
            props.setdefault(k, v)
    for base in S[n].get("allOf", []):
        b = ref_name(base["$ref"])
        for k, v in S[b].get("properties", {}).items():
            props.setdefault(k, v)
    return props


def emit_struct(n, rust_name, envelope, description=None):
    s = S[n]
    props = props_of(n)
    required_schema = set(s.get("required", []))
    req, opt = [], []
    for pname, prop in props.items():
        ty = rust_type(n, pname, prop, envelope)
        d = doc_line(prop.get("description")) or doc_line(non_null(prop) and non_null(prop).get("description"))
        if d is None:
            d = {"type": "Event type discriminator, as sent by Terra.", "status": "Event status, as sent by Terra."}.get(pname, f"Terra's `{pname}`.")
        is_req = (n, pname) in REQUIRED or (
            envelope
            and n not in OPTIONAL_USER and pname in REQUIRED_ENVELOPE_FIELDS and pname in required_schema and (ty == "TerraUser" or ty.startswith("Vec<"))
        )
        (req if is_req else opt).append((pname, ty, d))
    lines = []
    desc = description or DESCRIPTIONS.get(n) or doc_line(s.get("description")) or f"Terra's `{n}` object."
    lines.append("terra_struct! {")
    lines.append(f"    /// {desc}")
    if rust_name != n:
        lines.append(f"    ///")
        lines.append(f"    /// Terra schema: `{n}.yaml`.")
    lines.append(f"    {rust_name} {{")
    if req:
        lines.append("        @required {")
        for pname, ty, d in req:
            lines.append(f"            /// {d}")
            lines.append(f'            {field_ident(pname)}: {ty} = "{pname}",')
        lines.append("        }")
    for pname, ty, d in opt:
        lines.append(f"        /// {d}")
        lines.append(f'        {field_ident(pname)}: {ty} = "{pname}",')
    lines.append("    }")
    lines.append("}")
    return "\n".join(lines)


def const_ident(title, value, used):
    ident = re.sub(r"[^A-Za-z0-9]+", "_", str(title)).strip("_").upper() or f"CODE_{value}"
    if ident[0].isdigit():
        ident = "_" + ident
    if ident in used or ident in ("NAME",):
        ident = f"{ident}_{value}"
    used.add(ident)
    return ident


def emit_code(n):
    s = S[n]
    if "oneOf" in s:
        entries = [(x["const"], x.get("title") or str(x["const"]), x.get("description")) for x in s["oneOf"]]
    else:
        entries = [(v, {0: "UTC", 1: "Local"}.get(v, str(v)) if n == "TimestampLocalization" else str(v), None) for v in s["enum"]]
    desc = doc_line(s.get("description")) or f"Terra's `{n}` enumeration."
    macro = "terra_str_code" if is_string_code(n) else "terra_code"
    lines = [f"{macro}! {{", f"    /// {desc} Open: values Terra adds later are kept.", f"    {n} {{"]
    used = set()
    for value, title, d in entries:
        ident = const_ident(title, value, used)
        lines.append(f"        /// {doc_line(d) or title + '.'}")
        v = f'"{value}"' if isinstance(value, str) else str(int(value))
        lines.append(f'        {ident} = {v} => "{title}",')
    lines.append("    }")
    lines.append("}")
    return "\n".join(lines)


HEADER = "// @generated by tools/gen_model.py from schemas/terra/*.yaml: edit the script, not this file.\n"


def write(fname, module_doc, uses, bodies):
    path = os.path.join(OUT, fname)
    text = f"{HEADER}//! {module_doc}\n\n" + (f"{uses}\n\n" if uses else "") + "\n\n".join(bodies) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return path


def write_mod(modules):
    """generated/mod.rs: declares every generated module and re-exports its items."""
    decls = "\n".join(f"mod {m};" for m in modules)
    uses = "\n".join(f"pub use {m}::*;" for m in modules)
    doc = "Code generated from Terra's JSON Schemas: the six data types, their sub-objects, the open\n//! enumerations and the webhook envelopes (re-exported by `crate::model`)."
    return write("mod.rs", doc, "", [decls, uses])


def clear_output():
    """Removes the previous output, so a module the schemas no longer produce cannot linger."""
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".rs"):
            os.remove(os.path.join(OUT, f))


def main():
    roots_of = {}
    for root in DATA_TYPES:
        for n in reachable(root):
            roots_of.setdefault(n, set()).add(root)
    files = {k: [] for k in ["common", "codes", "envelope"] + [FILE_OF_ROOT[r] for r in DATA_TYPES]}
    order = []
    for root in DATA_TYPES:  # stable, readable order: each root first, then its sub-objects by name
        order.append(root)
        order.extend(sorted(reachable(root) - {root} - set(order)))
    order.append("TerraUser")
    for n in order:
        if n in [o for o in files["codes"]]:
            continue
        if is_code(n):
            files["codes"].append(emit_code(n))
        elif is_object(n):
            roots = roots_of.get(n, set())
            f = FILE_OF_ROOT[next(iter(roots))] if len(roots) == 1 else "common"
            files[f].append(emit_struct(n, n, envelope=False))
    for n, rust in EVENTS.items():
        files["envelope"].append(emit_struct(n, rust, envelope=True))
    uses = "use crate::model::prelude::*;"
    clear_output()
    paths = []
    paths.append(write("codes.rs", "Open enumerations: Terra sends these as JSON numbers; unknown values are kept.", "", files["codes"]))
    paths.append(write("common.rs", "Sub-objects shared by several data types (device data, heart rate, calories, samples…).", uses, files["common"]))
    paths.append(write("envelope.rs", "Webhook envelopes: the typed body of each event `type` (see `model/event.rs` for dispatch).", uses, files["envelope"]))
    for root in DATA_TYPES:
        paths.append(write(FILE_OF_ROOT[root] + ".rs", f"The `{root}` data type and the sub-objects only it uses.", uses, files[FILE_OF_ROOT[root]]))
    paths.append(write_mod(sorted(os.path.basename(p)[:-3] for p in paths)))
    subprocess.run(["rustfmt", "--edition", "2021"] + paths, check=True)
    total = sum(len(props_of(n)) for n in MODELLED if is_object(n))
    print(f"generated {len([n for n in MODELLED if is_object(n)])} structs ({total} fields), {len(files['codes'])} codes, {len(EVENTS)} envelopes")


if __name__ == "__main__":
    main()
