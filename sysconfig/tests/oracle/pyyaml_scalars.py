"""Reads a JSON list of plain scalars on stdin; prints, for each, what PyYAML's
yaml.safe_load makes of "- SCALAR": a type name and a value as JSON can hold it."""
import datetime
import json
import math
import sys

import yaml


def typed(v):
    if v is None:
        return ["null", None]
    if isinstance(v, bool):
        return ["bool", v]
    if isinstance(v, int):
        return ["int", str(v)]
    if isinstance(v, float):
        if math.isnan(v):
            return ["float", "nan"]
        if math.isinf(v):
            return ["float", "inf" if v > 0 else "-inf"]
        return ["float", repr(v)]
    if isinstance(v, (datetime.date, datetime.datetime)):
        return ["timestamp", None]
    if isinstance(v, str):
        return ["str", v]
    return ["other", repr(type(v))]


out = []
for s in json.load(sys.stdin):
    try:
        doc = yaml.safe_load("- " + s + "\n")
        out.append(typed(doc[0]))
    except yaml.YAMLError:
        out.append(["error", None])
    except ValueError:
        # A date the resolver accepts but datetime refuses (2001-13-45).
        out.append(["error", None])
json.dump(out, sys.stdout)
