"""Rendering a report (the plain dict ``analyze`` returns) as text or JSON."""

import json
import math
import shlex

import yaml

from .layers import pattern_lines


def _finite(value):
    """NaN and inf as the strings "nan", "inf", "-inf": JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json(report):
    """Strict JSON (no NaN literals) for a report or a comparison."""
    return json.dumps(_finite(report), indent=2, allow_nan=False)


def _params(params):
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "-"


def to_text(report, renderers):
    """``renderers`` maps an analysis name to its ``render(result) -> str`` (or None)."""
    spec = report["spec"]
    # The source and the overrides as a shell would take them back: what this report describes.
    sets = "".join(f" --set {shlex.quote(text)}" for text in report.get("overrides", ()))
    lines = [f"{spec['name']}  ({report['source']}{sets})"]
    if spec.get("description"):
        lines.append(spec["description"])
    lines.append("")
    lines.append("model:")
    model_yaml = yaml.safe_dump(spec["model"], sort_keys=False, default_flow_style=None)
    lines.extend("  " + line for line in model_yaml.strip().splitlines())
    lines.append(f"seed: {spec['seed']}   tokenizer: {spec['tokenizer']}")
    lines.append("")
    lines.append("components:")
    rows = [(kind, c["name"], _params(c["params"]), c["plugin"] + (f" ({c['distribution']})" if c["distribution"] else ""))
            for kind, c in report["components"].items()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
    if report.get("layers"):
        lines.append("")
        pattern = pattern_lines(report["layers"])
        lines.append(f"layers: {len(report['layers'])}, "
                     + ("differing in:" if pattern else "every one the same"))
        lines.extend("  " + line for line in pattern)
    for name, result in report["analyses"].items():
        lines.append("")
        lines.append(f"== {name} ==")
        render = renderers.get(name)
        body = render(result) if render else yaml.safe_dump(result, sort_keys=False).rstrip()
        lines.extend(body.splitlines())
    for name, message in report["failures"].items():
        lines.append("")
        lines.append(f"== {name} == FAILED: {message}")
    for warning in report.get("warnings", []):
        lines.append("")
        lines.append(f"WARNING: {warning}")
    return "\n".join(lines)
