"""Finding where NaN or inf first appears, so numerical faults are named rather than hidden."""

import torch


def _nonfinite(value):
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() and not bool(torch.isfinite(value).all())
    if isinstance(value, (tuple, list)):
        return any(_nonfinite(v) for v in value)
    return False


def first_nonfinite_module(model, *inputs):
    """Run ``model(*inputs)`` once and return the name of the first module whose output holds
    NaN or inf, in the order modules finish (innermost first), or None."""
    found = []

    def watch(name):
        def hook(module, args, output):
            if not found and _nonfinite(output):
                found.append(name or "model")
        return hook

    handles = [m.register_forward_hook(watch(n)) for n, m in model.named_modules()]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else None


def nonfinite_report(model, inputs, logits=None, loss=None):
    """A dict naming what is not finite (logits, loss, gradients) and the first module where it
    appears, or None when everything is finite. Call after backward to include gradients."""
    if logits is not None and _nonfinite(logits) or loss is not None and _nonfinite(loss):
        where = "logits" if logits is not None and _nonfinite(logits) else "loss"
        return {"where": where, "module": first_nonfinite_module(model, inputs)}
    bad = [name for name, p in model.named_parameters()
           if p.grad is not None and _nonfinite(p.grad)]
    if bad:
        return {"where": "gradients", "module": bad[0].rsplit(".", 1)[0], "parameters": len(bad)}
    return None


def describe(fault):
    text = f"NaN or inf in the {fault['where']}, first at {fault['module']}"
    if fault.get("parameters"):
        text += f" ({fault['parameters']} parameters affected)"
    return text
