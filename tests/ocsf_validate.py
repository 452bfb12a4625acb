"""Validates OCSF documents (one JSON object per line on stdin) with pydantic-ocsf — alerts as
Detection Findings (2004), credential inventory records as Live Evidence Info (5040) —:
models generated from the OCSF 1.5.0 schema export the package ships (not written by this
project). Beyond the models' checks (required attributes, types, enums), every attribute must
be one the schema defines: the models accept unknown ones into `model_extra`, which we reject.
Prints one line per document and exits non-zero on the first invalid one."""

import json
import sys

from ocsf.v1_5_0.events import DetectionFinding, EvidenceInfo
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
        if doc.get("class_uid") == 5040:
            f = EvidenceInfo.model_validate(doc)
            want, uid = (5040, 504001), f.metadata.uid
        else:
            f = DetectionFinding.model_validate(doc)
            want, uid = (2004, 200401), f.finding_info.uid
        bad = extras(f)
        if bad:
            print(f"not in the OCSF 1.5.0 schema: {bad}", file=sys.stderr)
            sys.exit(1)
        # An alert is a Create (1) or, for an incident's update, an Update (2) of its finding.
        ok = (
            (f.class_uid, f.type_uid) == want
            if f.class_uid == 5040
            else f.class_uid == 2004
            and f.activity_id in (1, 2)
            and f.type_uid == 200400 + f.activity_id
        )
        if not ok:
            print(f"class/type: {f.class_uid} {f.type_uid}", file=sys.stderr)
            sys.exit(1)
        n += 1
        print(f"valid {uid}")
    print(f"{n} valid")


main()
