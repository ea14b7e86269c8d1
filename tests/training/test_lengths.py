"""Length extrapolation (explorer.training.lengths, ``train.eval_lengths``): the validation loss
at other lengths than the training one, past the context where the positional encodings allow
it; a learned table's limit is a cell that says so, not an error; the training length's value
is the final validation loss; ALiBi and no positions degrade least at twice the length."""

import json

import pytest
import torch

import explorer
from explorer.errors import ResourceError, SpecError
from explorer.measure.resources import length_windows, training_need
from explorer.training.corpus import tokenize
from explorer.training.lengths import evaluate_at_lengths, validation_windows
from explorer.training.loop import load_training_corpus, train
from explorer.training.settings import TrainConfig
from explorer.sweep import run_sweep
from explorer.sweep.worker import execute_run
from explorer.model.tokenizer import get_tokenizer
from tests.helpers import run_cli
from tests.helpers.sweep_helpers import CORPUS, TINY, write_sweep


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus():
    return tokenize(CORPUS, "test corpus", get_tokenizer("bytes"), "bytes")


def micro(write_spec, positional="learned", **model):
    doc = {**TINY, "model": {**TINY["model"], **model},
           "components": {"positional": positional}}
    return explorer.load_spec(write_spec(doc))


def run(spec, corpus, lengths, steps=10, seed=1, **options):
    config = TrainConfig.from_dict({"batch_size": 4, "seq_len": 16, "eval_tokens": 256,
                                    "steps": steps, "eval_lengths": lengths, **options})
    return train(explorer.build_model(spec, seed=seed), spec, config, corpus=corpus, seed=seed)


# -- the model: forwards past the context only where asked, as far as the encodings reach ------

def test_a_normal_forward_still_refuses_past_the_context(write_spec):
    model = explorer.build_model(micro(write_spec, "rope"), seed=1).eval()
    ids = torch.zeros(1, 64, dtype=torch.long)
    with pytest.raises(ValueError, match="Cannot forward sequence of length 64, "
                                         "context_length is only 32"):
        model(ids)
    with model.beyond_context():
        assert model(ids).shape == (1, 64, 256)  # RoPE places any position
        inside = model(ids[:, :32])
    torch.testing.assert_close(inside, model(ids[:, :32]), rtol=0, atol=0)  # nothing else changes
    with pytest.raises(ValueError, match="context_length is only 32"):
        model(ids)  # the block is over


@pytest.mark.parametrize("positional, limit", [("learned", 32), ("rope", None),
                                               ("alibi", None), ("none", None),
                                               ("sinusoidal", None)])
def test_each_encoding_says_how_many_positions_it_places(write_spec, positional, limit):
    model = explorer.build_model(micro(write_spec, positional), seed=1)
    assert model.max_positions() == limit
    if limit:
        with model.beyond_context(), pytest.raises(
                ValueError, match="length 33, the positional encodings place only 32"):
            model(torch.zeros(1, 33, dtype=torch.long))


# -- the windows: the same validation split, deterministic -------------------------------------

def test_each_length_reads_the_same_tokens_of_the_validation_split(corpus):
    found = validation_windows(corpus.val_ids, [16, 64, 300], 256)
    for length, (inputs, targets) in found.items():
        n = max(256, length) // length
        assert inputs.shape == targets.shape == (n, length)
        torch.testing.assert_close(inputs.flatten(), corpus.val_ids[:n * length])
        torch.testing.assert_close(targets.flatten(), corpus.val_ids[1:n * length + 1])
    assert [len(found[n][0]) * n for n in (16, 64, 300)] == [256, 256, 300]  # one window at least


def test_a_length_the_validation_split_cannot_hold_is_an_error_before_training(write_spec,
                                                                                corpus):
    spec = micro(write_spec, "rope")
    too_long = len(corpus.val_ids)
    with pytest.raises(explorer.ExplorerError,
                       match=rf"eval_lengths: {too_long} is longer than the validation split of "
                             rf"test corpus \({too_long:,} tokens"):
        run(spec, corpus, [16, too_long], steps=10 ** 6)  # a million steps: never started


def test_the_metric_and_windows_plug_in(write_spec):
    """A task's accuracy at a length goes through the same function as the text's loss."""
    model = explorer.build_model(micro(write_spec, "learned"), seed=1)
    made = []

    def make_windows(length):
        made.append(length)
        return torch.zeros(2, length, dtype=torch.long), torch.zeros(2, length, dtype=torch.long)

    def accuracy(model, inputs, targets):
        return (model(inputs).argmax(-1) == targets).float().mean().item()

    cells = evaluate_at_lengths(model, [8, 32, 40], make_windows, accuracy, limit=32,
                                reason="beyond learned positions (context_length 32)")
    assert made == [8, 32]
    assert [c["windows"] for c in cells] == [2, 2, 0]
    assert 0 <= cells[0]["value"] <= 1 and cells[2]["value"] is None
    assert cells[2]["reason"] == "beyond learned positions (context_length 32)"


# -- a training run's lengths -----------------------------------------------------------------

def test_learned_positions_past_the_context_say_so_and_are_no_error(write_spec, corpus):
    result = run(micro(write_spec, "learned"), corpus, [8, 16, 32, 64])
    cells = {c["length"]: c for c in result["lengths"]["cells"]}
    assert cells[64] == {"length": 64, "value": None, "windows": 0, "tokens": 0,
                         "reason": "beyond learned positions (context_length 32)"}
    assert all(cells[n]["value"] > 0 and cells[n]["reason"] is None for n in (8, 16, 32))
    assert [cells[n]["windows"] for n in (8, 16, 32)] == [32, 16, 8]  # 256 tokens each
    assert result["lengths"]["max_positions"] == 32


def test_the_training_length_gives_the_final_validation_loss_exactly(write_spec, corpus):
    result = run(micro(write_spec, "rope"), corpus, [16, 48])
    at = {c["length"]: c["value"] for c in result["lengths"]["cells"]}
    assert at[16] == result["final_val_loss"] == result["curve"][-1]["val_loss"]  # same windows
    assert at[48] is not None  # past the context (32): RoPE goes on


def test_without_eval_lengths_the_result_is_unchanged(write_spec, corpus):
    result = run(micro(write_spec), corpus, [])
    assert "lengths" not in result


def _degradation(corpus, positional, seed):
    """(loss at 32 tokens, loss at 64) after 200 steps of 16 x 32 tokens with a 32-position
    context. On seeds 1-9 (2-core Xeon, torch 2.13.0+cpu) RoPE lost 0.085-0.19, no positions
    0.034-0.065, ALiBi -0.006-0.007: the ordering holds with room to spare."""
    spec = explorer.load_spec("specs/tiny.yaml", overrides=[
        f"components.positional={positional}", "model.n_layers=2", "model.context_length=32"])
    config = TrainConfig.from_dict({"batch_size": 16, "seq_len": 32, "steps": 200, "lr": 3e-3,
                                    "eval_tokens": 4096, "eval_every": 200,
                                    "eval_lengths": [32, 64]})
    result = train(explorer.build_model(spec, seed=seed), spec, config, corpus=corpus, seed=seed)
    at_32, at_64 = (c["value"] for c in result["lengths"]["cells"])
    return at_32, at_64


@pytest.fixture(scope="module")
def documentation():
    spec = explorer.load_spec("specs/tiny.yaml")
    return load_training_corpus("", spec, get_tokenizer("bytes"))


def _ordering(documentation, seed):
    """Learned positions cannot be evaluated at 64 at all (tested above, with the same 32-row
    table); of the others, ALiBi and no positions lose least at twice the length."""
    change = {p: (lambda a, b: b - a)(*_degradation(documentation, p, seed))
              for p in ("rope", "alibi", "none")}
    assert max(change["alibi"], change["none"]) < change["rope"], change
    return change


def test_alibi_and_no_positions_stay_closest_to_their_training_loss_at_twice_the_length(
        documentation):
    _ordering(documentation, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3, 4, 5])
def test_the_ordering_holds_over_seeds(documentation, seed):
    _ordering(documentation, seed)


# -- settings, memory ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, problem", [
    ([0], r"sweep.yaml: train.eval_lengths: item 0: must be >= 1, got 0; a list of "),
    ([64, -3], r"train.eval_lengths: item 1: must be >= 1, got -3"),
    (["long"], r"train.eval_lengths: item 0: expected an integer, got 'long'"),
    ([True], r"train.eval_lengths: item 0: expected an integer, got True"),
    ([None], r"train.eval_lengths: item 0: expected an integer, got None"),
    ([64, 64], r"train.eval_lengths: 64 is listed twice"),
    ({"a": 1}, r"train.eval_lengths: expected a list"),
])
def test_eval_lengths_are_checked_when_read(value, problem):
    with pytest.raises(SpecError, match=problem):
        TrainConfig.from_dict({"eval_lengths": value}, "sweep.yaml")


def test_eval_lengths_are_sorted_and_a_single_length_is_a_list():
    assert TrainConfig.from_dict({"eval_lengths": [512, 128, 2.56e2]}).eval_lengths == \
        [128, 256, 512]
    assert TrainConfig.from_dict({"eval_lengths": 256}).eval_lengths == [256]


def test_the_longest_length_is_in_the_memory_prediction(write_spec):
    spec = micro(write_spec, "rope")
    config = TrainConfig.from_dict({"batch_size": 4, "seq_len": 16, "eval_lengths": [16, 512],
                                    "eval_tokens": 0})  # the whole split: as many as fit
    need = training_need(spec, config.resolve(spec), activations=1000)
    phase = dict(zip(need.phase_names, need.phases))["evaluation at eval_lengths"]
    windows = length_windows(4, 16, 256, 512)
    # The training length's forward holds 16 MiB of logits: 1,024 windows of 16 tokens.
    assert windows == 16 * 2**20 // (16 * 256 * 4) * 16 // 512 == 32
    assert [p.total for p in phase] == [4 * 256 * windows * 512,  # logits
                                        4 * 256 * windows * 512,  # log-probabilities: all rows
                                        4 * 2 * windows * 512 * 512]  # 2 heads' scores
    assert need.total == sum(p.total for p in need.parts) + sum(p.total for p in phase)
    learned = micro(write_spec, "learned")  # nothing past 32 runs: no phase of its own
    assert "evaluation at eval_lengths" not in training_need(
        learned, config.resolve(learned), activations=1000).phase_names


def test_a_length_that_would_not_fit_is_refused_before_training(write_spec, corpus,
                                                                monkeypatch):
    monkeypatch.setenv("EXPLORER_AVAILABLE_MEMORY", "100MiB")
    # 8192 // 8192 = 1 window per forward: 2 heads x 8192 x 8192 float32 scores = 512 MiB.
    with pytest.raises(ResourceError, match=r"evaluation logits 8 MiB at 1 x 8192 per forward, "
                                            r".*attention scores 512 MiB 1 x 2 heads x 8192 x "
                                            r"8192\) but only 100 MiB is available.*; lower "
                                            r"train.batch_size or train.seq_len or "
                                            r"train.eval_lengths$"):
        run(micro(write_spec, "rope"), corpus, [16, 8192], steps=10 ** 6)


# -- the reports: build, compare, sweep ---------------------------------------------------------

def _write(write_spec, positional):
    doc = {**TINY, "name": f"micro-{positional}", "components": {"positional": positional},
           "analyses": {"train": {"steps": 10, "batch_size": 4, "seq_len": 16,
                                  "eval_tokens": 256, "eval_lengths": [16, 64]}}}
    return write_spec(doc)


def test_build_prints_the_loss_by_length(capsys, write_spec):
    code, out, err = run_cli(capsys, "build", _write(write_spec, "learned"), "--only", "train")
    assert code == 0, err
    lines = out[out.index("validation loss by length"):].splitlines()
    assert lines[0] == "validation loss by length (trained on 16-token windows, context_length 32):"
    assert lines[1] == "  length  val loss  vs 16"
    assert lines[2].startswith("      16  ") and "+0.0000  (" in lines[2]
    assert lines[3] == "      64  beyond learned positions (context_length 32)"
    code, out, _ = run_cli(capsys, "build", _write(write_spec, "learned"), "--only", "train",
                           "--format", "json")
    cells = json.loads(out)["analyses"]["train"]["lengths"]["cells"]
    assert cells[1]["value"] is None
    assert cells[1]["reason"] == "beyond learned positions (context_length 32)"
    code, out, _ = run_cli(capsys, "build", _write(write_spec, "rope"), "--only", "train")
    assert "      64  " in out and "(4 windows)" in out  # 256 tokens of the split
    assert "; evaluation at the longest of eval_lengths at " in out
    assert out.rstrip().endswith("(at 4 x 64 per forward)")


def test_bad_eval_lengths_in_a_spec_are_one_line(capsys, write_spec):
    path = _write(write_spec, "rope")
    code, out, err = run_cli(capsys, "build", path, "--only", "train",
                             "--set", "analyses.train.eval_lengths=[16, 0]")
    assert code == 2 and out == ""
    assert err == ("Error: --set analyses.train.eval_lengths: item 1: must be >= 1, got 0; "
                   "a list of sequence lengths such as [128, 256, 512]\n")
    doc = {**TINY, "analyses": {"train": {"eval_lengths": [16, 16]}}}
    path = write_spec(doc)
    code, out, err = run_cli(capsys, "build", path, "--only", "train")
    assert (code, out) == (2, "")
    assert err == (f"Error: {path}: analyses.train.eval_lengths: 16 is listed twice; each "
                   "length once\n")


def test_bad_eval_lengths_in_a_sweep_file_are_one_line(capsys, tmp_path):
    path = write_sweep(tmp_path, train={"eval_lengths": [64, "long"]})
    code, out, err = run_cli(capsys, "sweep", path, "--dry-run")
    assert (code, out) == (2, "")
    assert err == (f"Error: {path}: train.eval_lengths: item 1: expected an integer, got "
                   "'long'; a list of sequence lengths such as [128, 256, 512]\n")


def test_compare_has_a_row_per_length(capsys, write_spec, tmp_path):
    code, out, err = run_cli(capsys, "compare", _write(write_spec, "learned"),
                             _write(write_spec, "alibi"), "--only", "train", "--format", "json")
    assert code == 0, err
    rows = {r["figure"]: r["values"] for r in json.loads(out)["rows"]}
    assert rows["train.val_loss@64"][0] == "beyond 32 positions"
    assert rows["train.val_loss@64"][1] > 0
    assert rows["train.val_loss@16"][0] == rows["train.final_val_loss"][0]
    code, out, _ = run_cli(capsys, "compare", _write(write_spec, "learned"),
                           _write(write_spec, "alibi"), "--only", "train")
    line = next(line for line in out.splitlines() if line.strip().startswith("val_loss@64"))
    assert "beyond 32 positions" in line
    page = tmp_path / "compare.html"
    code, _, err = run_cli(capsys, "compare", _write(write_spec, "learned"),
                           _write(write_spec, "alibi"), "--only", "train", "--html", page)
    assert code == 0, err
    assert "val_loss@64" in page.read_text() and "beyond 32 positions" in page.read_text()


class InThisProcess:
    """An executor (explorer.sweep.executors' interface) that runs each run as it is submitted,
    here: no worker process to start (each would import torch)."""

    name, slots = "here", 1

    def __init__(self):
        self.finished = []

    def describe(self):
        return "in the test's process"

    def submit(self, task):
        self.finished.append(execute_run(task))
        return {"worker": "test", "host": "here"}

    def wait(self, timeout):
        finished, self.finished = self.finished, []
        return finished

    def cancel(self):
        pass

    def close(self):
        pass


def test_a_sweep_reports_each_length(capsys, tmp_path):
    path = write_sweep(tmp_path, grid={"components.positional": ["learned", "alibi"]},
                       seeds=[1, 2], steps=10, train={"eval_lengths": [16, 64]})
    assert run_sweep(path, executor=InThisProcess())["counts"]["done"] == 4
    code, out, err = run_cli(capsys, "sweep", path, "--report", "--format", "json")
    report = json.loads(out)
    learned, alibi = report["points"]
    assert [c["length"] for c in learned["lengths"]] == [16, 64]
    assert learned["lengths"][1]["val_loss"]["n"] == 0
    assert learned["lengths"][1]["reason"] == "beyond learned positions (context_length 32)"
    at_16 = alibi["lengths"][0]["val_loss"]
    assert at_16["n"] == 2 and at_16["mean"] == pytest.approx(alibi["final_val_loss"]["mean"],
                                                              abs=1e-12)
    change = alibi["lengths"][1]["change"]  # per seed, from the final validation loss
    assert change["n"] == 2 and change["mean"] == pytest.approx(
        alibi["lengths"][1]["val_loss"]["mean"] - alibi["final_val_loss"]["mean"], abs=1e-12)
    code, out, _ = run_cli(capsys, "sweep", path, "--report", "--html", tmp_path / "page.html")
    header = next(line for line in out.splitlines() if "loss@16" in line)
    assert header.split()[-2:] == ["loss@16", "loss@64"]
    learned_row = next(line for line in out.splitlines() if line.startswith("learned"))
    assert learned_row.rstrip().endswith("beyond learned positions")  # JSON: the whole reason
    assert "loss@64" in (tmp_path / "page.html").read_text()


def test_stored_runs_keep_their_keys_without_eval_lengths():
    """A store written before eval_lengths existed still matches its runs; asking for lengths
    is a new run (its result holds more)."""
    from explorer.sweep.plan import run_key

    spec, versions = {"model": {"n_layers": 1}}, {"explorer": "0", "torch": "0"}
    before = {k: v for k, v in TrainConfig().to_dict().items() if k != "eval_lengths"}
    key = run_key(spec, 1, before, "digest", versions)
    assert run_key(spec, 1, TrainConfig().to_dict(), "digest", versions) == key
    with_lengths = TrainConfig.from_dict({"eval_lengths": [64]}).to_dict()
    assert run_key(spec, 1, with_lengths, "digest", versions) != key


def test_a_task_is_scored_at_each_length_and_says_why_where_it_cannot_be(write_spec, capsys):
    """Induction (a block of 8, then its repeat: 16 tokens) on learned positions (context 32):
    at 16 the validation set itself, so the final accuracy and loss exactly; 17 is no
    induction length; 24 a block of 12, as many sequences; 64 past the learned table. The text
    report has a row per length, compare a figure per length."""
    doc = {**TINY, "analyses": {"train": {
        "task": {"name": "induction", "prefix_len": 8, "n_symbols": 16}, "steps": 10,
        "batch_size": 8, "eval_tokens": 256, "eval_lengths": [16, 17, 24, 64]}}}
    spec = explorer.load_spec(write_spec(doc))
    config = TrainConfig.from_dict(doc["analyses"]["train"]).resolve(spec)
    result = train(explorer.build_model(spec, seed=1), spec, config, seed=1)
    lengths = result["lengths"]
    assert (lengths["metric"], lengths["seq_len"], lengths["max_positions"]) == \
        ("val_accuracy", 16, 32)
    at_16, at_17, at_24, at_64 = lengths["cells"]
    assert (at_16["value"], at_16["loss"], at_16["exact_match"]) == (
        result["final_accuracy"], result["final_val_loss"], result["final_exact_match"])
    assert (at_16["windows"], at_16["tokens"]) == (16, 16 * 7)  # 256 // 16 sequences, 7 targets
    assert (at_24["windows"], at_24["tokens"]) == (16, 16 * 11) and 0 <= at_24["value"] <= 1
    assert at_17 == {"length": 17, "value": None, "windows": 0, "tokens": 0, "reason":
                     "task 'induction': a block of distinct tokens and its repeat: even lengths "
                     "4 to 32"}
    assert at_64["value"] is None
    assert at_64["reason"] == "beyond learned positions (context_length 32)"
    code, out, err = run_cli(capsys, "build", write_spec(doc), "--only", "train")
    assert code == 0, err
    table = out[out.index("validation accuracy by length"):].splitlines()
    assert table[0] == ("validation accuracy by length (trained on 16-token sequences, "
                        "context_length 32):")
    assert table[1] == "  length  val accuracy  vs 16"
    assert table[2] == f"      16  {at_16['value']:>12.4f}  +0.0000  (16 sequences)"
    assert table[5] == "      64  beyond learned positions (context_length 32)"
    from explorer.plugins.analyses.train import figures
    found = figures(result)
    assert found["val_accuracy@16"] == result["final_accuracy"]
    assert (found["val_accuracy@17"], found["val_accuracy@64"]) == (
        "no such length", "beyond 32 positions")


def test_a_task_sweep_reports_accuracy_at_each_length(capsys, tmp_path):
    path = write_sweep(tmp_path, grid={"components.positional": ["learned", "rope"]},
                       seeds=[1, 2], steps=10,
                       train={"eval_lengths": [16, 24, 64], "eval_tokens": 128},
                       task={"name": "induction", "prefix_len": 8, "n_symbols": 32})
    assert run_sweep(path, executor=InThisProcess())["counts"]["done"] == 4
    code, out, err = run_cli(capsys, "sweep", path, "--report", "--format", "json")
    report = json.loads(out)
    learned, rope = report["points"]
    at_16, at_24, at_64 = rope["lengths"]
    assert at_16["val_accuracy"]["n"] == 2 and at_16["val_accuracy"]["mean"] == pytest.approx(
        rope["final_accuracy"]["mean"], abs=1e-12)
    assert at_24["change"]["mean"] == pytest.approx(
        at_24["val_accuracy"]["mean"] - rope["final_accuracy"]["mean"], abs=1e-12)
    assert at_64["val_accuracy"]["n"] == 2  # RoPE places 64 positions; a block of 32
    assert learned["lengths"][2]["val_accuracy"]["n"] == 0
    assert learned["lengths"][2]["reason"] == "beyond learned positions (context_length 32)"
    code, out, _ = run_cli(capsys, "sweep", path, "--report")
    assert "acc@N: the final validation accuracy" in out
    header = next(line for line in out.splitlines() if "acc@16" in line)
    assert header.split()[-3:] == ["acc@16", "acc@24", "acc@64"]
