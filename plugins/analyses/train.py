"""The ``train`` analysis: a short, seeded training run, the honest way to compare ablations.

The training loop is the core's (:mod:`explorer.training.loop`, the one a sweep's runs use): AdamW
with warmup and a schedule on the shared model, trained in place (the context builds it again
for the analyses after this one), on the standard library's documentation text
(``pydoc_data.topics``) or a user's file, split 90/10 by position; train and validation loss on
fixed windows; the unigram baseline (the validation cross-entropy of a model that ignores
context). This module only checks the options, predicts the memory the run needs, and presents
the result.
"""

from explorer import Analysis, Chart, ParamError, SpecError, hookimpl
from explorer.measure.resources import size
from explorer.training.settings import TrainConfig

from . import seq_len_within_context


def train(ctx, **options):
    from explorer.training.loop import load_training_corpus, train as run

    config = TrainConfig.from_options(options, ctx.spec.source).resolve(ctx.spec,
                                                                     prefix="analyses.train")
    # The model (two copies when the context cannot build it again and trains a copy), its
    # gradients and AdamW moments, and the larger of a training step and an evaluation forward:
    # the one prediction explorer.train() and sweeps make (explorer.measure.resources).
    need = ctx.training_need(config, copies=1 if ctx.rebuildable else 2)
    ctx.require(need)
    corpus = load_training_corpus(config.corpus, ctx.spec, ctx.tokenizer())
    # In place: the context lets go of the model and builds it again, from the seed, for the
    # analyses after this one; a copy beside it would double the weights. The trained model is
    # kept for the analyses after this one that ask for it (ctx.trained_model()).
    with ctx.model_to_change() as model:
        result = run(model, ctx.spec, config, corpus=corpus, need=need)
        ctx.keep_trained(model)
        return result


def options_are_consistent(config, options):
    """The rules across settings (min_lr <= lr, warmup < steps, a budget's shape, ...), checked
    when the spec loads; and seq_len within the context."""
    seq_len_within_context(config, options)
    try:
        settings = TrainConfig.from_options(options, prefix="")
        if settings.task:
            task_fits_model(settings.task, config)
    except SpecError as exc:
        raise ParamError(exc.key.split(".")[0], exc.problem, exc.valid) from None


def task_fits_model(task, config):
    """A task's parameters and its needs (vocabulary, length) checked when the spec loads, for
    the tasks registered without the spec's own plugins (a task only the spec's ``plugins:``
    register is checked when the run starts)."""
    from explorer.registry.params import Checker
    from explorer.registry.plugin_manager import get_plugin_manager
    from explorer.training.tasks import TASK_KIND, check_task, task_fits

    manager = get_plugin_manager()
    if task.get("name") not in manager.registry().names(TASK_KIND):
        return
    checker = Checker("")
    name, _, made = check_task(task, manager, checker, "task")
    if not getattr(made, "uses_corpus", False):
        task_fits(made, name, config, checker, "task")


def _how_line(result, cfg):
    """Where and how the steps ran: the device, the precision, and eager or compiled."""
    how = f"on {cfg.get('device', 'cpu')} in {result.get('dtype', 'float32')}"
    if not result.get("compiled"):
        return how + ", eager"
    first = result.get("first_step_seconds")
    return how + ", compiled with torch.compile" + (
        f" (the first step, mostly compiling, took {first:.1f} s)" if first is not None else "")


def render(result):
    if "task" in result:
        return render_task(result)
    c, cfg = result["corpus"], result["config"]
    schedule = cfg["schedule"] + (f" to {cfg['min_lr']:g}" if cfg["schedule"] != "constant" else "")
    warmup = f", warmup {cfg['warmup']}" if cfg["warmup"] else ""
    clip = f", clip {cfg['grad_clip']:g}" if cfg["grad_clip"] else ""
    lines = [f"corpus: {c['source']}: {c['characters']:,} characters, {c['tokens']:,} "
             f"{c['tokenizer']} tokens ({c['train_tokens']:,} train / {c['val_tokens']:,} "
             f"validation)",
             f"{result.get('optimizer', 'AdamW')} lr {result['lr']:g} ({schedule}{warmup}"
             f"{clip}), weight decay {result['weight_decay']:g}: {result['steps']} steps of "
             f"{result['batch_size']} x {result['seq_len']} tokens ({result['tokens_seen']:,} "
             f"tokens seen), seed "
             f"{result['seed']}, {result['threads']} thread(s)",
             _how_line(result, cfg),
             " step      tokens  train loss  val loss"
             + ("  aux loss" if result.get("aux_losses") else "")]
    lines.extend(f"{p['step']:>5}  {p['tokens']:>10,}  {p['train_loss']:>10.4f}  "
                 f"{p['val_loss']:>8.4f}" + (f"  {p['aux_loss']:>8.4f}" if "aux_loss" in p else "")
                 for p in result["curve"])
    lines += _load_lines(result.get("stats", {}), result["steps"])
    verdict = "below" if result["below_unigram"] else "NOT below"
    lines.append(f"final validation loss {result['final_val_loss']:.4f} (perplexity "
                 f"{result['final_val_perplexity']:.2f}), {verdict} the unigram baseline "
                 f"{result['unigram_baseline']:.4f} (perplexity "
                 f"{result['unigram_perplexity']:.2f})")
    lines.append(f"best validation loss {result['best_val_loss']:.4f} at step "
                 f"{result['best_step']}; {result['tokens_per_second']:,.0f} training tokens/s")
    lines += _length_lines(result.get("lengths"), result["final_val_loss"])
    lines += _evaluation_lines(result)
    return "\n".join(lines)


def _length_lines(lengths, trained):
    """The final validation loss (a task's: accuracy) at each of eval_lengths, and its
    difference from the value at the training length (``trained``: the final validation loss or
    accuracy, on the same windows); a length the model cannot place, or a task cannot be made
    at, says why."""
    if not lengths:
        return []
    accuracy = lengths["metric"] == "val_accuracy"
    what, unit = ("accuracy", "sequences") if accuracy else ("loss", "windows")
    lines = [f"validation {what} by length (trained on {lengths['seq_len']}-token "
             f"{'sequences' if accuracy else 'windows'}, context_length "
             f"{lengths['context_length']}):",
             f"  length  val {what}  vs {lengths['seq_len']}"]
    width = len(f"val {what}")
    for cell in lengths["cells"]:
        if cell["value"] is None:
            lines.append(f"  {cell['length']:>6}  {cell['reason']}")
            continue
        lines.append(f"  {cell['length']:>6}  {cell['value']:>{width}.4f}  "
                     f"{cell['value'] - trained:+.4f}  ({cell['windows']} {unit})")
    return lines


def render_task(result):
    """A task run's report: the task, the curve of its metrics, the final scores."""
    cfg, task = result["config"], result["task"]
    settings = ", ".join(f"{k} {v}" for k, v in task.items() if k != "name")
    lines = [f"task: {task['name']} ({settings}); {result['targets']['val']:,} validation "
             f"targets, chance accuracy {result['chance']:.4g}" if result.get("chance") is not None
             else f"task: {task['name']} ({settings})",
             f"{result.get('optimizer', 'AdamW')} lr {result['lr']:g} ({cfg['schedule']}), "
             f"weight decay {result['weight_decay']:g}: {result['steps']} steps of "
             f"{result['batch_size']} x {result['seq_len']} tokens, seed {result['seed']}, "
             f"{result['threads']} thread(s)",
             _how_line(result, cfg),
             " step      tokens  train loss  val loss  train acc  val acc  val exact"]
    lines.extend(f"{p['step']:>5}  {p['tokens']:>10,}  {p['train_loss']:>10.4f}  "
                 f"{p['val_loss']:>8.4f}  {p['train_accuracy']:>9.4f}  {p['val_accuracy']:>7.4f}"
                 f"  {p['val_exact_match']:>9.4f}" for p in result["curve"])
    lines.append(f"final validation accuracy {result['final_accuracy']:.4f}, exact match "
                 f"{result['final_exact_match']:.4f}, loss on the targets "
                 f"{result['final_val_loss']:.4f}; best accuracy {result['best_accuracy']:.4f} "
                 f"at step {result['best_step']}")
    lines += _length_lines(result.get("lengths"), result["final_accuracy"])
    return "\n".join(lines)


def _evaluation_lines(result):
    """How much of the run's time and memory evaluation takes."""
    train_s, eval_s = result.get("train_seconds"), result.get("eval_seconds")
    memory = result.get("memory")
    if train_s is None or eval_s is None:
        return []
    evaluated = sum(result["corpus"]["eval_tokens"].values()) * len(result["curve"])
    text = (f"evaluation: {eval_s:.1f} s of the run's {train_s + eval_s:.1f} s "
            f"({eval_s / (train_s + eval_s):.0%}), {evaluated:,} tokens")
    if evaluated and result["tokens_seen"] and train_s:
        per_token = (eval_s / evaluated) / (train_s / result["tokens_seen"])
        text += f" at {per_token:.2f}x a training step's time per token"
    lines = [text]
    if memory and {"step", "evaluation"} <= set(memory["phases"]):
        held = sum(part["total"] for part in memory["parts"])
        step, evaluation = memory["phases"]["step"], memory["phases"]["evaluation"]
        lines.append(f"memory (predicted): evaluation peaks at {size(held + evaluation['bytes'])}"
                     f" ({evaluation['parts'][0]['note']}), a training step at "
                     f"{size(held + step['bytes'])}, {size(held)} of each held throughout "
                     "(weights, gradients, AdamW moments)")
        longest = memory["phases"].get("evaluation at eval_lengths")
        if longest:
            lines[-1] += (f"; evaluation at the longest of eval_lengths at "
                          f"{size(held + longest['bytes'])} ({longest['parts'][0]['note']})")
    return lines


def _load_lines(module_stats, step):
    """Each module's expert load at the last step, one line per module: shares that sum to 1."""
    loads = {name: found["expert_load"] for name, found in module_stats.items()
             if "expert_load" in found}
    if not loads:
        return []
    lines = [f"expert load at step {step} (each expert's share of the token assignments; "
             "balanced: 1 / n_experts each):"]
    for name, load in loads.items():
        spread = f"max/min {max(load) / min(load):.2f}" if min(load) else "an expert unused"
        lines.append(f"  {name}: {' '.join(f'{share:.3f}' for share in load)}  ({spread})")
    return lines


def figures(result):
    if "task" in result:
        return {"final_accuracy": result["final_accuracy"],
                "final_exact_match": result["final_exact_match"],
                "final_val_loss": result["final_val_loss"], "chance": result["chance"],
                "best_accuracy": result["best_accuracy"],
                "tokens_per_second": result["tokens_per_second"],
                **length_figures(result.get("lengths"))}
    return {"final_train_loss": result["curve"][-1]["train_loss"],
            "final_val_loss": result["final_val_loss"],
            "final_val_perplexity": result["final_val_perplexity"],
            "unigram_baseline": result["unigram_baseline"],
            "below_unigram": result["below_unigram"],
            "best_val_loss": result["best_val_loss"],
            "tokens_per_second": result["tokens_per_second"],
            **length_figures(result.get("lengths"))}


def length_figures(lengths):
    """``val_loss@N`` (a task's: ``val_accuracy@N``) per evaluated length: the value, or where
    there is none a short text saying why (``beyond 128 positions``, ``no such length``; the
    JSON has the reason)."""
    if not lengths:
        return {}
    name = lengths.get("metric", "val_loss")

    def missing(cell):
        limit = lengths["max_positions"]
        return f"beyond {limit} positions" if limit is not None and cell["length"] > limit \
            else "no such length"

    return {f"{name}@{c['length']}": c["value"] if c["value"] is not None else missing(c)
            for c in lengths["cells"]}


def draw_chart(fig, series):
    """Training and validation loss per spec, a panel each, every spec in its own colour, line
    style and marker; every distinct unigram baseline drawn once per panel (thin, dotted),
    labelled with the specs that share it (their number past two). The legend sits below."""
    from explorer.analysis.plots import WIDTH, legend_below, series_style

    fig.set_size_inches(WIDTH, 3.4)
    axes = fig.subplots(1, 2, sharey=True)
    baselines = {}  # baseline -> indices of the specs that have it
    for i, (label, result) in enumerate(series):
        steps = [point["step"] for point in result["curve"]]
        for ax, key in zip(axes, ("train_loss", "val_loss")):
            ax.plot(steps, [p[key] for p in result["curve"]], markersize=3, label=label,
                    **series_style(i))
        if "unigram_baseline" in result:  # a task's run has none
            baselines.setdefault(result["unigram_baseline"], []).append(i)
    for baseline, users in baselines.items():
        shared = len(users) > 1
        who = ("all specs" if len(users) == len(series) > 1
               else ", ".join(series[i][0] for i in users) if len(users) <= 2
               else f"{len(users)} specs")
        for ax in axes:
            ax.axhline(baseline, color="grey" if shared else series_style(users[0])["color"],
                       linestyle=(0, (1, 2)), linewidth=1.0,
                       label=f"unigram baseline {baseline:.4g} ({who})")
    for ax, title in zip(axes, ("training", "validation")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("cross-entropy loss (nats/token)")
    legend_below(fig)


@hookimpl
def explorer_analyses():
    return [Analysis(
        name="train", run=train, render=render, default=False, figures=figures,
        charts=(Chart("loss", "Training probe: loss per step", draw_chart),),
        description="A short seeded AdamW run on a text corpus (warmup, schedule, clipping, "
                    "budget): loss curves, final and best validation loss, tokens/s, and the "
                    "unigram baseline to beat.",
        params=TrainConfig.params(),
        check=options_are_consistent,
    )]
