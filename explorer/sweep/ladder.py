"""A sweep file's ``scale:``: a ladder of model sizes, the rules other keys follow as the size
changes, the budget tied to size, and what the report fits.

```yaml
scale:
  ladder:                          # one or two spec keys, a value per rung (zipped: rung i
    model.emb_dim: [32, 48, 64]    #   takes the i-th value of each)
    model.n_layers: [1, 2, 3]
  rules:                           # keys that follow the ladder: NAME * N, NAME / N or a value
    model.n_heads: emb_dim / 16    #   (NAME: a ladder key's last part; / must divide exactly)
    components.ffn.expansion: 4
  tokens_per_param: 20             # budget: 20 tokens per non-embedding parameter (else the
                                   #   sweep's budget: the same for every rung)
  fit: {x: params, extrapolate_to: 1.0e+9}   # x: params (non-embedding) or flops (training)
```

Each rung is a set of spec overrides: every grid point is trained at every rung, on every
seed, as runs of the one plan (:mod:`.plan`), so the store, resume and the executors treat a
ladder like any grid. Checked here without torch; :func:`model_counts` builds the model on the
meta device to count its parameters.
"""

import re
from dataclasses import dataclass

from ..errors import SpecError

SCALE_KEYS = ("ladder", "rules", "tokens_per_param", "fit")
FIT_KEYS = ("x", "extrapolate_to")
FIT_X = ("params", "flops")
MAX_LADDER_KEYS = 2  # width, depth or both
MIN_RUNGS = 3  # a fit of E, A and alpha needs three sizes
RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*([*/])\s*([0-9]+)\s*$")
EXAMPLE = ("e.g. scale: {ladder: {model.emb_dim: [32, 64, 128]}, rules: {model.n_heads: "
           "emb_dim / 16}, tokens_per_param: 20, fit: {x: params, extrapolate_to: 1.0e+9}}")


@dataclass(frozen=True)
class Rule:
    """A key that follows the ladder: ``value`` when fixed, else ``variable op number``."""

    key: str
    text: str
    variable: str = ""  # the short name of a ladder key (emb_dim)
    op: str = ""  # "*" or "/"
    number: int = 0
    value: object = None

    def apply(self, rung):
        """The key's value at ``rung`` (short name -> value); None when ``/`` leaves a
        remainder (the caller names the rung)."""
        if not self.variable:
            return self.value
        base = rung[self.variable]
        if self.op == "*":
            return base * self.number
        return base // self.number if base % self.number == 0 else None


@dataclass(frozen=True)
class Scale:
    ladder: dict  # spec key -> tuple of values, one per rung
    rules: dict  # spec key -> Rule
    tokens_per_param: float  # 0: the sweep's budget for every rung
    x: str  # "params" or "flops"
    extrapolate_to: float

    @property
    def keys(self):
        """The ladder keys: the coordinates a rung adds to a point."""
        return tuple(self.ladder)

    def rungs(self):
        """Per rung ``(coords, overrides)``: the ladder values, and every spec key it sets (the
        ladder's and the rules')."""
        short = {key.rsplit(".", 1)[-1]: key for key in self.ladder}
        out = []
        for values in zip(*self.ladder.values()):
            coords = dict(zip(self.ladder, values))
            named = {name: coords[key] for name, key in short.items()}
            out.append((coords, {**coords, **{k: r.apply(named) for k, r in self.rules.items()}}))
        return out


def _number(source, key, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 < value < float("inf")):
        raise SpecError(source, key, f"expected a positive number, got {value!r}", EXAMPLE)
    return value


def _ladder(source, value):
    if not isinstance(value, dict) or not value:
        raise SpecError(source, "scale.ladder", f"expected a mapping of spec key: [a value per "
                        f"rung], got {value!r}", EXAMPLE)
    if len(value) > MAX_LADDER_KEYS:
        raise SpecError(source, "scale.ladder", f"{len(value)} keys", "one or two: a width "
                        "(model.emb_dim), a depth (model.n_layers) or both, zipped rung by rung")
    lengths = set()
    for key, values in value.items():
        where = f"scale.ladder.{key}"
        if not isinstance(key, str) or not key.startswith("model.") or key.count(".") != 1:
            raise SpecError(source, "scale.ladder", f"{key!r} is not a model size key",
                            "model.KEY, e.g. model.emb_dim or model.n_layers")
        if not isinstance(values, list) or len(values) < MIN_RUNGS or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            raise SpecError(source, where, f"expected {MIN_RUNGS} or more positive whole "
                            f"numbers, got {values!r}",
                            f"a value per rung, e.g. [32, 64, 128] (a fit needs {MIN_RUNGS})")
        if values != sorted(set(values)):
            raise SpecError(source, where, f"{values} does not grow rung by rung",
                            "distinct values, smallest first")
        lengths.add(len(values))
    if len(lengths) > 1:
        counts = " and ".join(map(str, sorted(lengths)))
        raise SpecError(source, "scale.ladder", f"its keys have {counts} values",
                        "as many values for each key: rung i takes the i-th of each")
    return {key: tuple(values) for key, values in value.items()}


def _rules(source, value, ladder):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(source, "scale.rules", f"expected a mapping of spec key: rule, got "
                        f"{value!r}", "e.g. rules: {model.n_heads: emb_dim / 16}")
    names = [key.rsplit(".", 1)[-1] for key in ladder]
    rules = {}
    for key, text in value.items():
        where = f"scale.rules.{key}"
        if not isinstance(key, str) or not key or key in ladder:
            raise SpecError(source, where, "is a ladder key" if key in ladder else
                            "is not a spec key", "a spec key that follows the ladder, e.g. "
                            "model.n_heads")
        if isinstance(text, str):
            match = RULE.match(text)
            if not match or match.group(1) not in names or int(match.group(3)) < 1:
                raise SpecError(source, where, f"{text!r} is not a rule",
                                f"NAME * N or NAME / N with NAME one of {', '.join(names)} and "
                                "N a whole number >= 1, or a fixed value")
            rule = Rule(key, text, match.group(1), match.group(2), int(match.group(3)))
        else:
            rule = Rule(key, repr(text), value=text)
        for values in zip(*ladder.values()):
            named = dict(zip(names, values))
            if rule.apply(named) is None:
                raise SpecError(source, where, f"{text} leaves a remainder at "
                                f"{rule.variable}={named[rule.variable]}",
                                f"ladder values divisible by {rule.number}")
        rules[key] = rule
    return rules


def _fit(source, value):
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise SpecError(source, "scale.fit", f"expected a mapping, got {value!r}",
                        "e.g. fit: {x: params, extrapolate_to: 1.0e+9}")
    for key in value:
        if key not in FIT_KEYS:
            raise SpecError(source, f"scale.fit.{key}", "unknown key",
                            f"valid keys: {', '.join(FIT_KEYS)}")
    x = value.get("x", "params")
    if x not in FIT_X:
        raise SpecError(source, "scale.fit.x", f"{x!r} is not a size",
                        "params (non-embedding parameters) or flops (training FLOPs of a run)")
    if "extrapolate_to" not in value:
        raise SpecError(source, "scale.fit.extrapolate_to", "missing",
                        "the size the fits predict the loss at, e.g. 1.0e+9")
    return x, float(_number(source, "scale.fit.extrapolate_to", value["extrapolate_to"]))


def parse_scale(source, value, fixed, grid, has_budget):
    """``scale:`` of the sweep file ``source`` as a :class:`Scale`; ``fixed`` (``set:``) and
    ``grid`` may not set the keys it sets; a ``tokens_per_param`` budget excludes the sweep's
    ``budget:`` (``has_budget``)."""
    if not isinstance(value, dict):
        raise SpecError(source, "scale", f"expected a mapping, got {value!r}", EXAMPLE)
    for key in value:
        if key not in SCALE_KEYS:
            raise SpecError(source, f"scale.{key}", "unknown key",
                            f"valid keys: {', '.join(SCALE_KEYS)}")
    if "ladder" not in value:
        raise SpecError(source, "scale.ladder", "missing", EXAMPLE)
    ladder = _ladder(source, value["ladder"])
    rules = _rules(source, value.get("rules"), ladder)
    for key in (*ladder, *rules):
        for where, keys in (("set", fixed), ("grid", grid)):
            if key in keys:
                raise SpecError(source, f"{where}.{key}", "is also set by scale:",
                                "the ladder and its rules set it at each rung")
    per_param = value.get("tokens_per_param", 0)
    if "tokens_per_param" in value:
        _number(source, "scale.tokens_per_param", per_param)
        if has_budget:
            raise SpecError(source, "budget", "given beside scale.tokens_per_param",
                            "one budget: tokens per parameter, or a fixed budget for every rung")
    x, target = _fit(source, value.get("fit"))
    return Scale(ladder, rules, float(per_param), x, target)


def model_counts(spec, seq_len=1):
    """The closed-form counts of ``spec``'s model (:func:`explorer.measure.costs.closed_form`)
    from a compact model on the meta device: no weights allocated, any size answers at once."""
    from ..measure.costs import closed_form
    from ..model.gpt import build_model

    return closed_form(build_model(spec, device="meta", compact=True), spec.model, seq_len)


def run_size(spec, train, counts=None):
    """``{"params", "flops", "tokens"}`` of a run of ``spec`` with the resolved ``train``:
    non-embedding parameters, training FLOPs (3 x forward per token, times the tokens) and
    tokens. ``counts``: :func:`model_counts` at ``train.seq_len``, when already made."""
    counts = counts or model_counts(spec, train.seq_len)
    tokens = train.steps * train.batch_size * train.seq_len
    return {"params": counts["nonembedding_parameters"],
            "flops": counts["training_per_token"]["3x_forward"] * tokens, "tokens": tokens}
