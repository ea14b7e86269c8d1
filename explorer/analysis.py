"""The analysis runner: run registered analyses on one spec and collect a report (plain data)."""

import os
import platform

import torch

from .errors import ExplorerError, ResourceError
from .model import build_model
from .numerics import describe
from .plugin_manager import unknown_name_message
from .tokenizer import get_tokenizer


class AnalysisContext:
    """What an analysis sees. The model and tokenizer are built on first use and shared."""

    def __init__(self, spec, model=None, weights=None):
        self.spec = spec
        self._model = model
        self._weights = weights  # a checkpoint for model() to load
        self._shapes = None
        self._tokenizer = None

    def model(self):
        """The model with real weights, seeded with the spec's seed (built once).

        Refused with a :class:`ResourceError` before anything is allocated when the weights
        would not fit in the memory available now.
        """
        if self._model is None:
            check_fits(self.spec, self.shape_model())
            self._model = build_model(self.spec, weights=self._weights)
        return self._model

    def shape_model(self):
        """For analyses that need only shapes: the real model if built, else one on the meta
        device, which allocates no weights (a 175B spec is analysable on a laptop)."""
        if self._model is not None:
            return self._model
        if self._shapes is None:
            self._shapes = build_model(self.spec, device="meta")
        return self._shapes

    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = get_tokenizer(self.spec.tokenizer, self.spec.plugin_manager)
        return self._tokenizer

    def encode(self, text):
        """Token ids of ``text``, checked against the model's vocabulary."""
        ids = self.tokenizer().encode(text, allowed_special={"<|endoftext|>"})
        vocab = self.spec.model.vocab_size
        if ids and max(ids) >= vocab:
            raise ExplorerError(
                f"{self.spec.source or 'spec'}: model.vocab_size: {vocab} is too small for the "
                f"{self.spec.tokenizer} tokenizer (token id {max(ids)} in {text!r}); "
                f"use vocab_size >= {self.tokenizer().n_vocab}")
        return ids


def available_memory():
    """Bytes of memory available to a new allocation now (Linux: MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def weight_bytes(model):
    """Bytes the model's parameters (each tensor once) and buffers take, from shapes alone."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def check_fits(spec, shape_model):
    needed = weight_bytes(shape_model)
    available = available_memory()
    # Leave room for activations and gradients: refuse above 80% of what is available.
    if available is not None and needed > 0.8 * available:
        registry = spec.plugin_manager.registry()
        can_run = sorted(a.name for a in registry.analyses.values() if not a.needs_weights)
        raise ResourceError(
            f"{spec.source or spec.name}: the weights need {needed / 2**30:.1f} GiB but only "
            f"{available / 2**30:.1f} GiB is available; analyses that need only shapes can still "
            f"run: --only {','.join(can_run)}")


def environment():
    """What the numbers were measured on; recorded in every report."""
    return {
        "torch": torch.__version__.split("+")[0],
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "device": "cpu",
    }


def select(registry, only=None):
    """The analyses to run: ``only`` (names, in that order) or every default one."""
    if not only:
        return [a for a in registry.analyses.values() if a.default]
    chosen = []
    for name in only:
        if name not in registry.analyses:
            raise ExplorerError("--only: " + unknown_name_message("analysis", name, sorted(registry.analyses)))
        chosen.append(registry.analyses[name])
    return chosen


def analyze(spec, only=None, model=None, progress=None, weights=None):
    """Run analyses on ``spec`` and return the report as a dict.

    ``only`` names the analyses to run (default: every analysis marked default). ``model`` is an
    already built model to analyse instead of building one from the spec; ``weights`` a
    checkpoint to load into the one built (checked against the spec before any analysis runs,
    and only once it is known to fit in memory). ``progress``, if given,
    is called with each analysis's name once it has run. An analysis that raises is reported
    under ``failures`` with the plugin's name; the others still run.
    """
    registry = spec.plugin_manager.registry()
    chosen = select(registry, only)
    ctx = AnalysisContext(spec, model, weights)
    if model is None and any(a.needs_weights for a in chosen):
        check_fits(spec, ctx.shape_model())  # refuse before allocating, not halfway through
    if weights is not None:
        ctx.model()  # a checkpoint that does not match the spec fails here, as one line
    report = {
        "spec": spec.to_dict(),
        "source": spec.source,
        "overrides": list(spec.overrides),  # the --set KEY=VALUE texts applied to the source
        "components": {},
        "environment": environment(),
        "analyses": {},
        "failures": {},
        "warnings": [],
    }
    for kind, choice in spec.components.items():
        provider = registry.provider[(kind, choice.name)]
        report["components"][kind] = {
            "name": choice.name, "params": choice.params, "plugin": provider.plugin,
            "distribution": provider.distribution,
        }
    for analysis in chosen:
        provider = registry.provider[("analysis", analysis.name)]
        options = {**analysis.defaults(), **spec.analyses.get(analysis.name, {})}
        try:
            result = report["analyses"][analysis.name] = analysis.load()(ctx, **options)
            if isinstance(result, dict) and result.get("nonfinite"):
                report["warnings"].append(f"{analysis.name}: {describe(result['nonfinite'])}")
        except ExplorerError as exc:
            report["failures"][analysis.name] = str(exc)
        except Exception as exc:
            report["failures"][analysis.name] = (
                f"analysis {analysis.name!r} (plugin {provider.plugin}) raised "
                f"{type(exc).__name__}: {exc}")
        if progress:
            progress(analysis.name)
    return report
