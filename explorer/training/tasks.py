"""Tasks: what a training run learns from and how it is scored (the ``task`` plugin kind).

A task is a registered component of kind ``task`` (:class:`explorer.Component`): its
``factory(**params)`` returns an object with the :class:`Task` contract below. The train
settings choose it (``task: {name: recall, n_pairs: 16}``, or ``task: recall``); without one a
run learns the corpus, as it always has (the ``text`` task is that, chosen by name).

The core reads a task through its contract only, so a third-party task is trained, validated
and swept exactly like a built-in. :class:`SyntheticTask` is the helper most tasks build on: a
task implements ``sample(generator, n, state)`` and gets deterministic batches, fixed
evaluation sets and the standard metrics. Generation uses its own CPU ``torch.Generator``,
seeded from the run's seed (never the global random state), so the same seed gives the same
data on every executor and machine. Importing this module does not import torch.
"""

from typing import Iterator, Protocol

from explorer.errors import ParamError, PluginError, UnknownNameError
from explorer.registry.components import TASK_KIND

IGNORE = -100  # a target that carries no loss (torch's cross-entropy ignore_index)


class Task(Protocol):
    """What the core needs of a task (the object a ``task`` component's factory returns)."""

    vocab_size_needed: int  # token ids it uses are 0 .. vocab_size_needed - 1
    seq_len_needed: int  # the length of every sequence it yields
    chance: float | None  # the token accuracy of guessing (reports compare against it)

    def batches(self, split: str, seed: int, batch_size: int) -> Iterator[tuple]:
        """Endless ``(inputs, targets)`` pairs of CPU long tensors ``(batch_size,
        seq_len_needed)``; ``targets`` is ``IGNORE`` (-100) where a position carries no loss.
        The same ``(split, seed)`` gives the same batches, wherever it runs."""

    def examples(self, split: str, seed: int, n: int) -> tuple:
        """A fixed evaluation set of ``n`` sequences, ``(inputs, targets)`` as above."""

    def metrics(self, losses, predictions, targets) -> dict:
        """Scores of an evaluation set from per-position cross-entropy ``losses`` (B, T),
        the arg-max ``predictions`` (B, T) and the ``targets`` (B, T): a dict of plain
        floats, with at least ``loss`` (mean over the target positions) and ``accuracy``."""

    # Optional: at_length(length) -> Task, the same task with sequences of ``length`` tokens
    # (what ``train.eval_lengths`` scores the trained model on), or ValueError with the reason
    # there is none at that length. A task without it is scored at its own length only.


class CorpusTask:
    """The corpus language modelling every run did before tasks existed: a task factory that
    returns one chooses the text path of :func:`explorer.training.loop.train`, unchanged."""

    uses_corpus = True
    vocab_size_needed = 0
    seq_len_needed = 0
    chance = None


def standard_metrics(losses, predictions, targets):
    """``loss`` (mean cross-entropy over the target positions, nats), ``accuracy`` (the share of
    target positions predicted exactly) and ``exact_match`` (the share of sequences whose every
    target position is right)."""
    scored = targets != IGNORE
    count = int(scored.sum())
    correct = (predictions == targets) & scored
    has_targets = scored.any(dim=1)
    whole = (correct.sum(dim=1) == scored.sum(dim=1)) & has_targets
    return {"loss": float(losses[scored].double().sum()) / max(count, 1),
            "accuracy": float(correct.sum()) / max(count, 1),
            "exact_match": float(whole.sum()) / max(int(has_targets.sum()), 1),
            "targets": count}


def generator(seed, stream):
    """A CPU ``torch.Generator`` for one of a task's streams, seeded from the run's seed as
    :func:`explorer.training.loop.derive_seed` seeds the loop's (stream ``task:<stream>``; not
    imported from there: the loop imports what imports this module)."""
    import hashlib

    import torch

    digest = hashlib.sha256(f"explorer:{seed}:task:{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class SyntheticTask:
    """The base of tasks that generate their sequences: subclasses set ``vocab_size_needed``,
    ``seq_len_needed`` and ``chance`` and implement ``sample(generator, n, state)`` -> ``(inputs,
    targets)`` of ``n`` sequences. ``setup(generator)`` (optional) draws what every split of a
    seed shares (memorization's facts) and is passed to ``sample`` as ``state``.

    ``train_examples`` > 0 makes the training set that many sequences, drawn once from the seed
    and sampled with replacement (the papers' training-set size); 0 draws fresh sequences every
    step. Validation sequences come from a stream of their own."""

    train_examples = 0
    chance = None

    def setup(self, generator):
        return None

    def sample(self, generator, n, state):
        raise NotImplementedError

    def _state(self, seed):
        return self.setup(generator(seed, "setup"))

    def examples(self, split, seed, n):
        state = self._state(seed)
        if split == "train" and self.train_examples:
            inputs, targets = self.sample(generator(seed, "train"), self.train_examples, state)
            return inputs[:n], targets[:n]
        return self.sample(generator(seed, split), n, state)

    def batches(self, split, seed, batch_size):
        import torch

        state = self._state(seed)
        if split == "train" and self.train_examples:
            inputs, targets = self.sample(generator(seed, "train"), self.train_examples, state)
            order = generator(seed, "order")
            while True:
                picked = torch.randint(0, self.train_examples, (batch_size,), generator=order)
                yield inputs[picked], targets[picked]
        stream = generator(seed, f"{split}-batches")
        while True:
            yield self.sample(stream, batch_size, state)

    def metrics(self, losses, predictions, targets):
        return standard_metrics(losses, predictions, targets)

    def stretched(self, **settings):
        """A copy of this task with ``settings`` (attributes) changed: what ``at_length``
        implementations return."""
        import copy

        other = copy.copy(self)
        other.__dict__.update(settings)
        return other


def task_at_length(task, name, length, vocab_size):
    """``(task, None)``: ``task`` with sequences of ``length`` tokens (``task`` itself at its
    own length), or ``(None, reason)`` where it has none: it defines no other lengths, its
    ``at_length`` says why not, or it would need more than the model's ``vocab_size``."""
    if length == task.seq_len_needed:
        return task, None
    method = getattr(task, "at_length", None)
    if not callable(method):
        return None, f"task {name!r} defines no other lengths (at_length)"
    try:
        other = method(length)
    except ValueError as exc:
        return None, f"task {name!r}: {exc}"
    except Exception as exc:  # a plugin's bug: said in the cell, the trained run kept
        return None, f"task {name!r}: at_length({length}) raised {type(exc).__name__}: {exc}"
    made = getattr(other, "seq_len_needed", None)
    if made != length:  # a plugin's bug, said where the value would be
        return None, f"task {name!r}: at_length({length}) gave sequences of {made} tokens"
    if other.vocab_size_needed > vocab_size:
        return None, (f"task {name!r} at {length} tokens needs vocab_size "
                      f"{other.vocab_size_needed}; the model has {vocab_size}")
    return other, None


def check_task(options, plugin_manager, checker, key):
    """``options`` (``{name: ..., PARAM: value}``) checked against the registered task: returns
    ``(name, params merged over the defaults, the task object)``; a one-line SpecError at
    ``key`` otherwise."""
    if not isinstance(options, dict) or not isinstance(options.get("name"), str):
        raise checker.error(key, f"expected a task name or {{name: TASK, PARAM: value}}, got "
                            f"{options!r}", "e.g. task: recall or task: {name: recall, n_pairs: 8}")
    name = options["name"]
    registry = plugin_manager.registry()
    try:
        component = registry.component(TASK_KIND, name)
    except UnknownNameError as exc:
        raise checker.error(f"{key}.name", exc.problem, exc.valid) from None
    given = {k: v for k, v in options.items() if k != "name"}
    params = checker.params(key, component.params, given, f"task {name!r}")
    try:
        task = component.load()(**params)
    except ParamError as exc:
        where = f"{key}.{exc.param}" if exc.param else key
        raise checker.error(where, exc.problem, exc.valid) from None
    except Exception as exc:  # a plugin's bug: named, one line
        raise PluginError(f"task {name!r} (plugin {registry.provider[(TASK_KIND, name)]}): its "
                          f"factory raised {type(exc).__name__}: {exc}") from None
    return name, params, task


def task_fits(task, name, model, checker, key):
    """Refuse (SpecError at ``key``) a model (its ModelConfig) whose vocabulary or context is
    too small for the task."""
    for needed, have, what in ((task.vocab_size_needed, model.vocab_size, "vocab_size"),
                               (task.seq_len_needed, model.context_length, "context_length")):
        if needed > have:
            raise checker.error(key, f"task {name!r} needs model.{what} >= {needed}; the spec "
                                f"has {have}",
                                f"a spec with model.{what} >= {needed}, or easier task settings")


def make_task(options, plugin_manager):
    """The task object of resolved train settings' ``task`` (None: the corpus)."""
    if not options:
        return None
    registry = plugin_manager.registry()
    name = options["name"]
    component = registry.component(TASK_KIND, name)
    params = {**component.defaults(), **{k: v for k, v in options.items() if k != "name"}}
    return component.load()(**params)


__all__ = ["IGNORE", "TASK_KIND", "Task", "CorpusTask", "SyntheticTask", "standard_metrics",
           "task_at_length", "check_task", "task_fits", "make_task"]
