"""Validates OCSF Detection Findings (one JSON object per line on stdin) with pydantic-ocsf:
models generated from the OCSF 1.5.0 schema export the package ships (not written by this
project). Beyond the models' checks (required attributes, types, enums), every attribute must
be one the schema defines: the models accept unknown ones into `model_extra`, which we reject.
Prints one line per document and exits non-zero on the first invalid one."""

import json
import sys

from ocsf.v1_5_0.events import DetectionFinding
from pydantic import BaseModel


def extras(m, path="$"):
    """Paths of attributes the schema does not define, anywhere in the model tree."""
    out = []
    if isinstance(m, BaseModel):
        for k in (m.model_extra or {}):
            # `unmapped` is the schema's place for source fields; it is a free object.
            out.append(f"{path}.{k}")
        for name in type(m).model_fields:
            if name == "unmapped":
                continue
            out += extras(getattr(m, name), f"{path}.{name}")
    elif isinstance(m, list):
        for i, x in enumerate(m):
            out += extras(x, f"{path}[{i}]")
    return out


def main():
    n = 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        doc = json.loads(line)
        f = DetectionFinding.model_validate(doc)
        bad = extras(f)
        if bad:
            print(f"not in the OCSF 1.5.0 schema: {bad}", file=sys.stderr)
            sys.exit(1)
        # Create (1) or, for an incident's update, Update (2).
        if f.class_uid != 2004 or f.activity_id not in (1, 2) or f.type_uid != 200400 + f.activity_id:
            print(f"class/type: {f.class_uid} {f.type_uid}", file=sys.stderr)
            sys.exit(1)
        n += 1
        print(f"valid {f.finding_info.uid}")
    print(f"{n} valid")


main()
