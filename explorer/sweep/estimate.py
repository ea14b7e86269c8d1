"""``--dry-run``: what a sweep would cost, before anything is trained or stored.

Per grid point: steps and tokens per run, parameters, training FLOPs per token and per run,
memory per run (explorer.measure.resources.training_need: the one prediction a worker refuses
by), all from compact models (explorer.model.stack), and time per run (timed on a few points,
predicted for the others: explorer.sweep.timing); and how much of each evaluation takes: its
share of the time, and the run's peak while it evaluates. Then how many runs are left, where
they would execute, whether workers x threads fit the cores and the runs at once fit the
memory, and the estimated wall time.
"""

from ..training.settings import eval_steps
from .executors import cpu_count, local_description
from .progress import duration

MB = 2**20


def _where(executor, slots, threads, ray_address):
    if executor == "local":
        return local_description(slots, threads)
    place = f"the Ray cluster at {ray_address}" if ray_address else "a local Ray on 127.0.0.1"
    return (f"ray: {slots} runs at once on {place}, each asking for num_cpus={threads} "
            "(Ray is not started by --dry-run)")


def estimate(plan, todo, executor="local", workers=None, threads=1, ray_address=None):
    """The dry run as plain data; ``todo`` are the keys of the runs still to do.

    Costs come from compact models (explorer.model.stack: a block per distinct layer, on the meta
    device and fake tensors), so a grid of any sizes costs milliseconds per point; the time per
    run is measured on a few points and predicted for the others (explorer.sweep.timing).
    """
    from ..measure.costs import run_costs
    from ..measure.available import available_memory
    from ..model.tokenizer import get_tokenizer
    from ..training.loop import load_training_corpus
    from .timing import eval_tokens_per_evaluation, length_tokens, matmul_flops_per_second, \
        measure, seconds_per_step

    todo = set(todo)
    available = available_memory()
    corpora, corpus_of, points, costs_of = {}, [], [], {}
    sizes = []  # per point: blocks, training FLOPs per step, forward FLOPs per token (1/3 of it)
    for point in plan.points:
        spec, config = point.spec, point.train
        corpus_key = (config.corpus, spec.tokenizer, spec.model.vocab_size)
        if corpus_key not in corpora:
            tokenizer = get_tokenizer(spec.tokenizer, spec.plugin_manager)
            corpora[corpus_key] = load_training_corpus(config.corpus, spec, tokenizer)
        corpus_of.append(corpora[corpus_key])
        # Points that differ only in train settings share their Spec (make_plan loads each
        # model once) and, at one batch shape and evaluation size, their costs: a 500-point grid
        # of learning rates builds its model once, not 500 times.
        shape = (id(spec), config.batch_size, config.seq_len, config.eval_tokens)
        if shape not in costs_of:
            costs_of[shape] = run_costs(spec, config)
        costs = costs_of[shape]
        need = costs["need"]
        held = sum(p.total for p in need.parts)
        per_token = costs["training_flops_per_token"]
        tokens_per_step = config.batch_size * config.seq_len
        tokens = config.steps * tokens_per_step
        sizes.append((spec.model.n_layers, per_token * tokens_per_step, per_token / 3))
        evaluations = 1 + len(eval_steps(config.steps, tokens_per_step, config.eval_every,
                                         config.eval_every_tokens))
        points.append({
            "label": point.label, "config": point.coords, "steps": config.steps,
            "tokens": tokens, "parameters": costs["parameters"],
            "training_flops_per_token": per_token, "training_flops": per_token * tokens,
            "memory_bytes": costs["memory_bytes"],
            # The run's peak in each phase (a step, an evaluation), what it holds throughout too.
            "memory_phases_bytes": {name: held + sum(p.total for p in phase)
                                    for name, phase in zip(need.phase_names, need.phases)},
            # Every evaluation of the curve, then the final one at train.eval_lengths.
            "eval_tokens": evaluations * eval_tokens_per_evaluation(config, corpus_of[-1])
            + length_tokens(config, corpus_of[-1]),
            "runs_to_do": sum(run.key in todo for run in plan.runs_of(point)),
        })
    seed = plan.sweep.seeds[0]

    def measure_point(i):
        point = plan.points[i]
        return measure(point.spec, point.train, corpus_of[i], threads, seed)

    speeds = seconds_per_step(
        sizes, measure_point,
        fits=lambda i: available is None or points[i]["memory_bytes"] <= available,
        rate=lambda: matmul_flops_per_second(threads, plan.points[0].train.device))
    for p, (step_seconds, eval_per_token, basis) in zip(points, speeds):
        p["evaluation_seconds"] = p["eval_tokens"] * eval_per_token
        p["seconds_per_run"] = p["steps"] * step_seconds + p["evaluation_seconds"]
        p["time_basis"] = basis
    slots = workers or max(1, cpu_count() // threads)
    work = sum(p["seconds_per_run"] * p["runs_to_do"] for p in points)
    largest = max((p["memory_bytes"] for p in points), default=0)
    return {"sweep": plan.sweep.name, "source": plan.sweep.source, "runs": len(plan.runs),
            "runs_to_do": len(todo), "points": points, "threads": threads, "slots": slots,
            "executor": _where(executor, slots, threads, ray_address),
            "memory_at_once_bytes": largest * min(slots, max(1, len(todo))),
            "memory_available_bytes": available,
            "estimated_seconds": work / slots}


TIME_MARKS = {"measured": "", "predicted": "~", "lower_bound": ">="}


def dry_run_text(est):
    lines = [f"sweep {est['sweep']}  ({est['source']}): {est['runs']} runs, {est['runs_to_do']} "
             "to do; nothing is trained or stored by --dry-run", ""]
    header = ["point", "steps", "tokens/run", "params", "FLOPs/token", "FLOPs/run",
              "memory/run", "eval memory", "time/run", "eval time", "to do"]
    rows = [[p["label"], f"{p['steps']:,}", f"{p['tokens']:,}", f"{p['parameters']:,}",
             f"{p['training_flops_per_token']:.3g}", f"{p['training_flops']:.3g}",
             f"{p['memory_bytes'] / MB:,.1f} MB",
             f"{p['memory_phases_bytes']['evaluation'] / MB:,.1f} MB",
             TIME_MARKS[p["time_basis"]] + duration(p["seconds_per_run"]),
             f"{p['evaluation_seconds'] / p['seconds_per_run']:.0%}" if p["seconds_per_run"]
             else "-", str(p["runs_to_do"])] for p in est["points"]]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    available = est["memory_available_bytes"]
    fits = "" if available is None else (
        f" of {available / MB:,.0f} MB available" + (
            "" if est["memory_at_once_bytes"] <= available else " (DOES NOT FIT: fewer workers)"))
    threads = f"{est['threads']} thread{'s' * (est['threads'] != 1)}"
    bound = ">=" if any(p["time_basis"] == "lower_bound" and p["runs_to_do"]
                        for p in est["points"]) else ""
    lines += ["", est["executor"],
              f"memory: {est['memory_at_once_bytes'] / MB:,.1f} MB for the runs at once{fits}",
              f"estimated wall time: {bound}{duration(est['estimated_seconds'])} (time per run "
              f"on this machine with {threads}, divided over {est['slots']} runs at once)",
              "time/run: " + _time_basis(est["points"]),
              "eval memory: the run's peak while it evaluates (weights, gradients, AdamW "
              "moments, a forward's logits); eval time: evaluation's share of time/run"]
    return "\n".join(lines)


def _time_basis(points):
    timed = sum(p["time_basis"] == "measured" for p in points)
    parts = []
    if timed:
        parts.append(f"measured on {timed} point{'s' * (timed != 1)} (a step after a warm-up, "
                     "an evaluation of one chunk)")
    if any(TIME_MARKS[p["time_basis"]] == "~" for p in points):
        parts.append("~ predicted from them by blocks and FLOPs per step")
    if any(p["time_basis"] == "lower_bound" for p in points):
        parts.append(">= at this machine's fp32 matmul rate (no point fits or trains a step "
                     "cheaply enough to time): a lower bound")
    return "; ".join(parts)
