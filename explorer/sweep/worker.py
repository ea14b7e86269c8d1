"""One run of a sweep, where it executes: a local worker process or a Ray task.

:func:`execute_run` takes a task (plain data from :meth:`explorer.sweep.plan.Run.task`) and
returns an outcome (plain data): ``done`` with the metrics, the curve and the result, or
``failed`` with a one-line reason and its kind (``error``, ``diverged``, ``memory``). It never
raises for a run's own failure, so the rest of the sweep goes on. Memory is checked before the
run starts: a run predicted not to fit in the memory available now is refused.

A worker process keeps what several runs share: the plugin manager, the tokenized corpus, and
each grid point's static costs and memory estimate (every seed trains the same point). The
driver never imports torch: it starts at once, and the workers do this work in parallel.
"""

import json
import os
import signal
import socket
import sys
import time

from ..errors import ExplorerError, ResourceError, one_line

_CACHE = {}
# What a task's run adds to the metrics (explorer.training.task_training): its scores.
TASK_METRICS = ("final_accuracy", "final_exact_match", "best_accuracy", "chance")


def _cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _plugins():
    from ..registry.plugin_manager import get_plugin_manager

    return _cached("plugins", get_plugin_manager)


def _corpus(spec, config, digest, text):
    """The tokenized corpus, read here (local workers) or sent by the driver (Ray)."""
    from ..training.corpus import digest as content_digest, load_corpus
    from ..model.tokenizer import get_tokenizer
    from ..training.loop import prepare_corpus

    def make():
        body, source = (text, config.corpus or "the driver's corpus") if text is not None \
            else load_corpus(config.corpus)
        if content_digest(body) != digest:
            raise ExplorerError(f"train: corpus {source} changed since the sweep was planned; "
                                "start the sweep again to plan it on the new text")
        return prepare_corpus(body, source, spec, get_tokenizer(spec.tokenizer, _plugins()))

    return _cached(("corpus", digest, spec.tokenizer, spec.model.vocab_size), make)


def _point_costs(spec, config):
    """:func:`explorer.measure.costs.run_costs` of the run's grid point, once per worker."""
    from ..measure.costs import run_costs

    # What the costs depend on: the model, its components and its per-layer overrides.
    doc = spec.to_dict()
    identity = json.dumps([doc["model"], doc["components"], doc.get("layers"),
                           config.batch_size, config.seq_len, config.eval_tokens], sort_keys=True)
    return _cached(("costs", identity), lambda: run_costs(spec, config))


def check_memory(need, host):
    """Refuse (ResourceError) a run whose :class:`~explorer.measure.resources.Need` (the one
    prediction, explorer.measure.resources.training_need: the dry run's memory/run) does not fit
    in the memory available now, with the same one line an analysis's refusal reads."""
    from ..measure.available import available_memory
    from ..measure.resources import refuse_unless_fits

    refuse_unless_fits(need, available_memory(), f"memory on {host}")


def _run(task, corpus_text, host):
    from ..model.gpt import build_model
    from ..spec.loading import spec_from_dict
    from ..training.settings import TrainConfig
    from ..training.loop import train

    spec = spec_from_dict(task["spec"], source=task["source"], plugins=_plugins())
    config = TrainConfig(**task["train"])
    costs = _point_costs(spec, config)
    check_memory(costs["need"], host)
    # A task makes its own data: no corpus to read.
    corpus = None if config.task else _corpus(spec, config, task["corpus_digest"], corpus_text)
    result = train(build_model(spec, seed=task["seed"]), spec, config, corpus=corpus,
                   seed=task["seed"], need=costs["need"])
    metrics = {name: result[name] for name in (
        "final_val_loss", "best_val_loss", "best_step", "best_tokens", "unigram_baseline",
        "tokens_per_second", "train_seconds", "eval_seconds", "steps", "tokens_seen",
        "parameters", "threads", *TASK_METRICS) if name in result}
    metrics.update(training_flops_per_token=costs["training_flops_per_token"],
                   memory_bytes=costs["memory_bytes"])
    if "lengths" in result:  # train.eval_lengths: {length: loss, or None and a reason}
        metrics["lengths"] = {str(c["length"]): c["value"] for c in result["lengths"]["cells"]}
        metrics["length_reasons"] = {str(c["length"]): c["reason"]
                                     for c in result["lengths"]["cells"] if c["reason"]}
    return metrics, result


def execute_run(task, corpus_text=None):
    """Train one run; return its outcome (never raises for the run's own failure)."""
    from ..training.loop import DivergedError

    host = socket.gethostname()
    outcome = {"key": task["key"], "host": host, "worker": str(os.getpid()),
               "started": time.time()}
    clock = time.perf_counter()
    try:
        metrics, result = _run(task, corpus_text, host)
        outcome.update(state="done", metrics=metrics, result=result)
    except DivergedError as exc:
        outcome.update(state="failed", failure="diverged", reason=str(exc))
    except ResourceError as exc:
        outcome.update(state="failed", failure="memory", reason=str(exc))
    except MemoryError:
        outcome.update(state="failed", failure="memory", reason="ran out of memory")
    except ExplorerError as exc:
        outcome.update(state="failed", failure="error", reason=str(exc))
    except Exception as exc:  # a plugin's bug: recorded, and the sweep goes on
        outcome.update(state="failed", failure="error", reason=f"{type(exc).__name__}: {exc}")
    outcome["seconds"] = time.perf_counter() - clock
    if outcome["state"] == "failed":
        outcome["reason"] = one_line(outcome["reason"])
    return outcome


def die_with_parent(parent):
    """Linux: have the kernel kill this process when its driver dies (SIGKILL included)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the driver died before the request took effect
        os._exit(0)


def worker_main(conn, parent):
    """A local worker process: take tasks from ``conn``, send back outcomes, until told to stop."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    from ..training import loop  # noqa: F401  (pay torch's import before the first task)

    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(execute_run(task))
