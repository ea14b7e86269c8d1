"""The analysis runner: run registered analyses on one spec and collect a report (plain data)."""

import contextlib
import copy
import platform

import torch

from explorer.measure.activations import cast_floating, saved_activation_bytes
from explorer.errors import ExplorerError, NotApplicable, ParamError, ResourceError, UnknownNameError
from explorer.spec.layers import LAYER_KINDS
from explorer.model.gpt import build_model
from explorer.measure.numerics import describe
from explorer.measure.available import available_memory, memory_available_on
from explorer.measure.resources import (WEIGHTS_SHARE, refuse_unless_fits, training_need,
                                        weight_bytes)
from explorer.model.tokenizer import get_tokenizer
from explorer.weights.loading import load_model

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class AnalysisContext:
    """What an analysis sees: the spec, and the models and measurements analyses share.

    Each model is built on first use and kept for the report's other analyses: the real one
    (:meth:`model`), one on the meta device (:meth:`meta_model`) and one of fake tensors
    (:meth:`fake_model`). Analyses that read shapes and sum over the stack use compact ones
    (:meth:`compact_model`: one block per distinct layer configuration, see explorer.model.stack),
    which a 96-layer model builds in two blocks. Activation measurements are cached per
    (seq_len, batch, dtype, device).

    ``device`` (a ``torch.device``, default the CPU) holds the real model and the analyses'
    inputs; ``dtype`` (``"float32"``, ``"bfloat16"``, ``"float16"``) is what their forwards
    compute in: float32 weights, forwards under :meth:`autocast` (mixed precision).
    """

    def __init__(self, spec, model=None, weights=None, device=None, dtype="float32"):
        self.spec = spec
        self._model = model
        self._rebuildable = model is None  # built here from the spec: can be built again
        self._weights = weights  # a checkpoint for model() to load
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.dtype = dtype
        self._meta = None
        self._compact_meta = None
        self._fake_mode = None
        self._fake = {}  # compact or not -> the model of fake tensors
        self._activations = {}
        self._tokenizer = None
        self._trained = None  # what an analysis trained, for the ones after it

    @property
    def source(self):
        """The spec's file name (or name), for messages."""
        return self.spec.source or self.spec.name

    @property
    def has_model(self):
        """Whether the real model is built now (and :meth:`model` hands it back as it is)."""
        return self._model is not None

    def model(self):
        """The model with real weights, seeded with the spec's seed (built once).

        Refused with a :class:`ResourceError` before anything is allocated when the weights
        would not fit in the memory available now.
        """
        if self._model is None:
            check_fits(self.spec, self.compact_model())
            # Built on the CPU, then moved: the same seeded weights on every device.
            self._model = load_model(self.spec, self._weights).to(self.device)
        return self._model

    @contextlib.contextmanager
    def model_to_change(self):
        """``with ctx.model_to_change() as model:`` the shared model, for an analysis that
        changes it (trains it in place). The context lets go of it: the next :meth:`model`
        builds it again from the seed (and the weights), the same weights the other analyses
        expect, at the cost of a build rather than of a copy held beside it. A model the context
        was handed cannot be built again: the block gets a copy of it instead."""
        model = self.model()
        if not self._rebuildable:
            yield copy.deepcopy(model)
            return
        self._model = None
        yield model

    def keep_trained(self, model):
        """Keep ``model``, which the calling analysis has trained, for the analyses after it:
        :meth:`trained_model` returns it from then on. The built-in ``train`` analysis calls it.
        The context holds it until the report is done, beside the model later analyses build
        from the seed."""
        self._trained = model

    def trained_model(self):
        """The model an earlier analysis of this report trained (``--only train,yours``: the
        ``train`` analysis's, after its steps), on :attr:`device`; None when none has (train
        is not a default analysis, and runs in the order ``--only`` gives). :meth:`model` stays
        the spec's seeded initial weights, so an analysis can compare the two."""
        return self._trained

    @property
    def rebuildable(self):
        """Whether :meth:`model_to_change` hands over the shared model (the context built it and
        can build it again) rather than a copy of it (a model the context was handed)."""
        return self._rebuildable

    def autocast(self):
        """The forwards' precision: ``torch.autocast`` in :attr:`dtype`, nothing for float32."""
        from explorer.training.devices import autocast

        return autocast(self.device, self.dtype)

    def shape_model(self):
        """For analyses that need only shapes: the real model if built, else :meth:`meta_model`
        (every block; :meth:`compact_model` builds one per distinct layer configuration)."""
        return self._model if self._model is not None else self.meta_model()

    def compact_model(self):
        """For analyses that read shapes and sum over the stack: the real model if built, else
        ``meta_model(compact=True)``. Read its blocks through explorer.model.stack (``layer_blocks``,
        ``stack_total``, ``per_layer``), which give the full model's figures on either."""
        return self._model if self._model is not None else self.meta_model(compact=True)

    def meta_model(self, compact=False):
        """The model on the meta device, which allocates no weights (a 175B spec is analysable
        on a laptop); always meta, also once the real model is built. Built once.

        ``compact``: one block per distinct layer configuration (explorer.model.stack), standing for
        the whole stack; the full meta model serves if it is built already.
        """
        if compact and self._meta is None:
            if self._compact_meta is None:
                self._compact_meta = build_model(self.spec, device="meta", compact=True)
            return self._compact_meta
        if self._meta is None:
            self._meta = build_model(self.spec, device="meta")
        return self._meta

    @contextlib.contextmanager
    def fake_model(self, dtype="fp32", compact=False):
        """``with ctx.fake_model() as model:`` a model of fake CPU tensors (torch's
        FakeTensorMode): every op dispatches to the CPU's kernels for shapes and dtypes, yet no
        memory is allocated, at any size.

        Fake tensors work only inside their mode, so the block runs inside it (create inputs
        there too) and the mode is left on exit, also on an exception. The model is built once
        and shared; ``dtype`` (``"fp32"`` or ``"bf16"``) casts every floating tensor in place,
        which costs nothing and loses nothing on tensors that hold no values. ``compact``: one
        block per distinct layer configuration (explorer.model.stack), built once too.
        """
        # FakeTensorMode ships with torch (torch.compile traces with it) but lives in a private
        # module; the memory analysis falls back to the meta device when it fails.
        from torch._subclasses.fake_tensor import FakeTensorMode

        if self._fake_mode is None:
            self._fake_mode = FakeTensorMode()
        with self._fake_mode:
            if compact not in self._fake:
                self._fake[compact] = build_model(self.spec, compact=compact)
            yield cast_floating(self._fake[compact], DTYPES[dtype])

    @contextlib.contextmanager
    def mode(self, model, train):
        """``with ctx.mode(model, train=False):`` the model in training (dropout active) or eval
        mode for the block, and back in the mode it was in afterwards, whatever happens inside."""
        was_training = model.training
        model.train(train)
        try:
            yield model
        finally:
            model.train(was_training)

    def saved_activations(self, seq_len, batch_size=1, dtype="fp32", device="fake"):
        """What autograd saves for backward in one training forward + loss, in bytes (``total``,
        ``per_block``, ...: see :func:`explorer.measure.activations.saved_activation_bytes`), measured
        once per set of arguments and shared by the analyses.

        ``device``: ``fake`` (the CPU's kernels, no memory), ``meta`` (no memory; fused
        attention runs unfused there, so it saves more) or ``cpu`` (the real model). On fake
        tensors and the meta device a compact model measures each distinct block once.
        """
        key = (seq_len, batch_size, dtype, device)
        if key not in self._activations:
            if device == "fake":
                with self.fake_model(dtype, compact=True) as model:
                    measured = saved_activation_bytes(model, batch_size, seq_len)
            else:
                model = self.meta_model(compact=True) if device == "meta" else self.model()
                if dtype != "fp32":
                    model = cast_floating(copy.deepcopy(model), DTYPES[dtype])
                measured = saved_activation_bytes(model, batch_size, seq_len)
            self._activations[key] = measured
        return self._activations[key]

    def activations_per_sequence(self, seq_len):
        """fp32 bytes autograd saves per sequence of ``seq_len`` tokens (batch 1), for
        predictions: on fake tensors, or on the meta device (more: unfused attention) for a
        component fake tensors cannot run."""
        try:
            return self.saved_activations(seq_len)["total"]
        except ExplorerError:
            raise
        except Exception:  # data-dependent code in a component
            return self.saved_activations(seq_len, device="meta")["total"]

    def training_need(self, config, copies=1, what="train", prefix="analyses.train",
                      evaluation=True):
        """The :class:`~explorer.measure.resources.Need` of a training run of the model with
        ``config`` (a :class:`explorer.TrainConfig`): the one prediction
        (:func:`explorer.measure.resources.training_need`) from this context's compact model and
        its cached activations. ``copies`` of the weights (the shared model and the analysis's
        own copies); ``prefix`` names the options that make it smaller, for the refusal."""
        if not config.seq_len:
            config = config.resolve(self.spec)
        return training_need(self.spec, config, model=self.compact_model(),
                             activations=self.activations_per_sequence(config.seq_len),
                             copies=copies, what=what, prefix=prefix, evaluation=evaluation)

    def require(self, need):
        """Refuse with a one-line :class:`ResourceError` unless ``need`` (a
        :class:`~explorer.measure.resources.Need`) fits in the memory available now.

        A need counts the shared model; once it is built, the system no longer reports its
        bytes as available, so they are added back rather than counted twice.
        """
        available = memory_available_on(self.device)
        if available is not None and self._model is not None:
            available += weight_bytes(self._model)
        where = self.source if self.device.type == "cpu" else f"{self.source} on {self.device}"
        refuse_unless_fits(need, available, where)

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


def check_fits(spec, shape_model, suggest_shape_analyses=True):
    """Refuse (:class:`ResourceError`) a model whose weights alone would take more than
    :data:`~explorer.measure.resources.WEIGHTS_SHARE` of the memory available, suggesting the
    analyses that need only shapes unless not ``suggest_shape_analyses``."""
    needed = weight_bytes(shape_model)
    available = available_memory()
    if available is None or needed <= WEIGHTS_SHARE * available:
        return
    message = (f"{spec.source or spec.name}: the weights need {needed / 2**30:.1f} GiB but only "
               f"{available / 2**30:.1f} GiB is available")
    if suggest_shape_analyses:
        registry = spec.plugin_manager.registry()
        can_run = sorted(a.name for a in registry.analyses.values() if not a.needs_weights)
        message += f"; analyses that need only shapes can still run: --only {','.join(can_run)}"
    raise ResourceError(message)


def environment(device="cpu", dtype="float32"):
    """What the numbers were measured on; recorded in every report."""
    return {
        "torch": torch.__version__,  # "2.13.0+cpu": the build is part of the version
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "dtype": dtype,
    }


def select(registry, only=None):
    """The analyses to run: ``only`` (names, in that order) or every default one."""
    if not only:
        return [a for a in registry.analyses.values() if a.default]
    chosen = []
    for name in only:
        if name not in registry.analyses:
            raise UnknownNameError("analysis", name, sorted(registry.analyses), where="--only")
        chosen.append(registry.analyses[name])
    return chosen


def analyze(spec, only=None, model=None, progress=None, weights=None, device="cpu",
            dtype="float32"):
    """Run analyses on ``spec`` and return the report as a dict.

    ``only`` names the analyses to run (default: every analysis marked default). ``model`` is an
    already built model to analyse instead of building one from the spec; ``weights`` a
    checkpoint to load into the one built (checked against the spec before any analysis runs,
    and only once it is known to fit in memory). ``device`` (``cpu``, ``cuda``, ``cuda:N``,
    ``mps`` or ``auto``) holds the model and the analyses' tensors, refused in one line when
    torch cannot use it; ``dtype`` (``float32``, ``bfloat16``, ``float16``) is what forwards
    compute in (autocast over float32 weights). The report's ``environment`` records both.
    ``progress``, if given,
    is called with each analysis's name once it has run. An analysis that raises is reported
    under ``failures`` with the plugin's name; the others still run. An analysis that predicted
    it would not fit in memory refused before allocating (a :class:`ResourceError`): its one
    line is under ``failures`` too and its name under ``refused``, and the others' results are
    kept. One that raises :class:`explorer.NotApplicable` is left out of ``analyses`` and listed
    under ``skipped`` with the reason. Weights that would not fit at all raise
    :class:`ResourceError` before anything runs.
    """
    from explorer.training.devices import resolve_device, resolve_dtype

    registry = spec.plugin_manager.registry()
    chosen = select(registry, only)
    dtype, device = resolve_dtype(dtype), resolve_device(str(device))
    ctx = AnalysisContext(spec, model, weights, device, dtype)
    if model is None and any(a.needs_weights for a in chosen):
        check_fits(spec, ctx.compact_model())  # refuse before allocating, not halfway through
    if weights is not None:
        ctx.model()  # a checkpoint that does not match the spec fails here, as one line
    report = {
        "spec": spec.to_dict(),
        "source": spec.source,
        "overrides": list(spec.overrides),  # the --set KEY=VALUE texts applied to the source
        "components": {},
        "environment": environment(device, dtype),
        "analyses": {},
        "failures": {},
        "refused": [],  # analyses that predicted they would not fit and allocated nothing
        "skipped": {},  # analyses that do not apply to this spec (NotApplicable) -> the reason
        "warnings": [],
    }
    for kind, choice in spec.components.items():
        provider = registry.provider[(kind, choice.name)]
        report["components"][kind] = {
            "name": choice.name, "params": choice.params, "plugin": provider.plugin,
            "distribution": provider.distribution,
        }
    if spec.layers:  # the resolved choices of every block, for the kinds a layer may choose
        report["layers"] = [{kind: {"name": c.name, "params": c.params}
                             for kind, c in choices.items() if kind in LAYER_KINDS}
                            for choices in spec.layer_components()]
    for analysis in chosen:
        provider = registry.provider[("analysis", analysis.name)]
        options = {**analysis.defaults(), **spec.analyses.get(analysis.name, {})}
        try:
            # Analyses seed the global stream for their dropout masks: keep that to themselves.
            with torch.random.fork_rng(devices=[]):
                result = report["analyses"][analysis.name] = analysis.load()(ctx, **options)
            if isinstance(result, dict) and result.get("nonfinite"):
                report["warnings"].append(f"{analysis.name}: {describe(result['nonfinite'])}")
        except NotApplicable as exc:  # left out of the report, not an n/a in it
            report["analyses"].pop(analysis.name, None)
            report["skipped"][analysis.name] = str(exc) or "not applicable"
        except ResourceError as exc:  # refused before it allocated anything; the others go on
            report["failures"][analysis.name] = str(exc)
            report["refused"].append(analysis.name)
        except Exception as exc:
            # A ParamError belongs in the analysis's check, run when the spec loads: raised by
            # the run, it is the plugin's fault, like any exception that is not explorer's own.
            own = isinstance(exc, ExplorerError) and not isinstance(exc, ParamError)
            report["failures"][analysis.name] = str(exc) if own else (
                f"analysis {analysis.name!r} (plugin {provider.plugin}) raised "
                f"{type(exc).__name__}: {exc}")
        if progress:
            progress(analysis.name)
    return report
