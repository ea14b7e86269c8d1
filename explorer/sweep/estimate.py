"""``--dry-run``: what a sweep would cost, before anything is trained or stored.

Per grid point: steps and tokens per run, parameters, training FLOPs per token and per run,
memory per run (weights + gradients + AdamW moments + measured activations) and time per run
(a few steps timed on a throwaway model, plus the evaluations). Then how many runs are left,
where they would execute, whether workers x threads fit the cores and the runs at once fit the
memory, and the estimated wall time.
"""

from dataclasses import replace

from ..train_config import eval_steps
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
    """The dry run as plain data; ``todo`` are the keys of the runs still to do."""
    from ..analysis import available_memory
    from ..costs import run_costs
    from ..model import build_model
    from ..tokenizer import get_tokenizer
    from ..training import load_training_corpus, measure_speed

    todo = set(todo)
    corpora, points = {}, []
    for point in plan.points:
        spec, config = point.spec, point.train
        corpus_key = (config.corpus, spec.tokenizer, spec.model.vocab_size)
        if corpus_key not in corpora:
            tokenizer = get_tokenizer(spec.tokenizer, spec.plugin_manager)
            corpora[corpus_key] = load_training_corpus(config.corpus, spec, tokenizer)
        costs = run_costs(spec, config.batch_size, config.seq_len)
        timed = replace(config, threads=threads)
        speed = measure_speed(build_model(spec, seed=plan.sweep.seeds[0]), spec, timed,
                              corpora[corpus_key], seed=plan.sweep.seeds[0])
        tokens = config.steps * config.batch_size * config.seq_len
        evaluations = 1 + len(eval_steps(config.steps, config.batch_size * config.seq_len,
                                         config.eval_every, config.eval_every_tokens))
        points.append({
            "label": point.label, "config": point.coords, "steps": config.steps,
            "tokens": tokens, "parameters": costs["parameters"],
            "training_flops_per_token": costs["training_flops_per_token"],
            "training_flops": costs["training_flops_per_token"] * tokens,
            "memory_bytes": costs["memory_bytes"],
            "seconds_per_run": config.steps * speed["step_seconds"]
            + evaluations * speed["eval_seconds"],
            "runs_to_do": sum(run.key in todo for run in plan.runs_of(point)),
        })
    slots = workers or max(1, cpu_count() // threads)
    work = sum(p["seconds_per_run"] * p["runs_to_do"] for p in points)
    largest = max((p["memory_bytes"] for p in points), default=0)
    return {"sweep": plan.sweep.name, "source": plan.sweep.source, "runs": len(plan.runs),
            "runs_to_do": len(todo), "points": points, "threads": threads, "slots": slots,
            "executor": _where(executor, slots, threads, ray_address),
            "memory_at_once_bytes": largest * min(slots, max(1, len(todo))),
            "memory_available_bytes": available_memory(),
            "estimated_seconds": work / slots}


def dry_run_text(est):
    lines = [f"sweep {est['sweep']}  ({est['source']}): {est['runs']} runs, {est['runs_to_do']} "
             "to do; nothing is trained or stored by --dry-run", ""]
    header = ["point", "steps", "tokens/run", "params", "FLOPs/token", "FLOPs/run",
              "memory/run", "time/run", "to do"]
    rows = [[p["label"], f"{p['steps']:,}", f"{p['tokens']:,}", f"{p['parameters']:,}",
             f"{p['training_flops_per_token']:.3g}", f"{p['training_flops']:.3g}",
             f"{p['memory_bytes'] / MB:,.1f} MB", duration(p["seconds_per_run"]),
             str(p["runs_to_do"])] for p in est["points"]]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    available = est["memory_available_bytes"]
    fits = "" if available is None else (
        f" of {available / MB:,.0f} MB available" + (
            "" if est["memory_at_once_bytes"] <= available else " (DOES NOT FIT: fewer workers)"))
    lines += ["", est["executor"],
              f"memory: {est['memory_at_once_bytes'] / MB:,.1f} MB for the runs at once{fits}",
              f"estimated wall time: {duration(est['estimated_seconds'])} (time per run measured "
              f"on this machine with {est['threads']} thread{'s' * (est['threads'] != 1)}, "
              f"divided over {est['slots']} runs at once)"]
    return "\n".join(lines)
