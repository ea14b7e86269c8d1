"""Rendering a report (the plain dict ``analyze`` returns) as text or JSON."""

import json
import math
import shlex

import yaml

from explorer.spec.layers import pattern_lines


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


def params_text(params):
    """A component's parameters as ``k=v, ...`` ("-" when it has none)."""
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "-"


def provider_text(component):
    """The plugin that supplied a component, and its distribution: ``plugin (distribution)``."""
    return component["plugin"] + (f" ({component['distribution']})"
                                  if component["distribution"] else "")


def overrides_text(report):
    """The report's overrides as a shell would take them back: `` --set KEY=VALUE`` each."""
    return "".join(f" --set {shlex.quote(text)}" for text in report.get("overrides", ()))


def section_text(result, render=None):
    """An analysis's section of the text report: ``render(result)``, or the result's YAML."""
    return render(result) if render else yaml.safe_dump(result, sort_keys=False).rstrip()


def _component_lines(components, width=100):
    """One line per component (kind, name, the plugin that supplied it), its parameters wrapped
    below it: short enough for a terminal whatever the parameter list."""
    import textwrap

    kinds = max(len(kind) for kind in components)
    names = max(len(c["name"]) for c in components.values())
    indent = " " * (2 + kinds + 2 + names + 2)
    lines = []
    for kind, c in components.items():
        lines.append(f"  {kind:<{kinds}}  {c['name']:<{names}}  from {provider_text(c)}")
        if c["params"]:
            lines.extend(textwrap.wrap(params_text(c["params"]), width, initial_indent=indent,
                                       subsequent_indent=indent))
    return lines


def to_text(report, renderers):
    """``renderers`` maps an analysis name to its ``render(result) -> str`` (or None)."""
    spec = report["spec"]
    # The source and the overrides: what this report describes.
    lines = [f"{spec['name']}  ({report['source']}{overrides_text(report)})"]
    if spec.get("description"):
        lines.append(spec["description"])
    lines.append("")
    lines.append("model:")
    model_yaml = yaml.safe_dump(spec["model"], sort_keys=False, default_flow_style=None)
    lines.extend("  " + line for line in model_yaml.strip().splitlines())
    lines.append(f"seed: {spec['seed']}   tokenizer: {spec['tokenizer']}")
    lines.append("")
    lines.append("components:")
    lines.extend(_component_lines(report["components"]))
    if report.get("layers"):
        lines.append("")
        pattern = pattern_lines(report["layers"])
        lines.append(f"layers: {len(report['layers'])}, "
                     + ("differing in:" if pattern else "every one the same"))
        lines.extend("  " + line for line in pattern)
    for name, result in report["analyses"].items():
        lines.append("")
        lines.append(f"== {name} ==")
        lines.extend(section_text(result, renderers.get(name)).splitlines())
    for name, message in report["failures"].items():
        lines.append("")
        lines.append(f"== {name} == FAILED: {message}")
    for warning in report.get("warnings", []):
        lines.append("")
        lines.append(f"WARNING: {warning}")
    return "\n".join(lines)
