"""The core training loop (explorer.training.loop, explorer.training.settings): schedules, budgets and
evaluation points computed by hand, clipping against an unclipped twin, divergence, auxiliary
losses, seeds."""

import math

import pytest
import torch

import explorer
from explorer.training.corpus import tokenize
from explorer.model.tokenizer import get_tokenizer
from explorer.training.settings import TrainConfig, budget_steps, eval_steps, learning_rate
from explorer.training.loop import DivergedError, _Run, derive_seed, train
from tests.helpers.sweep_helpers import CORPUS, TINY

# The hand count for TINY (V=256, h=16, L=1, 4h MLP, no qkv bias) at s=16: per block the weight
# matrices hold 3*16*16 (q, k, v) + 16*16 (out) + 2*16*64 (MLP) = 3,072 values.
FORWARD_PER_TOKEN = 2 * 3072 + 4 * 1 * 16 * 16 + 2 * 16 * 256  # matmuls + scores + head = 15,360
TRAINING_PER_TOKEN = 3 * FORWARD_PER_TOKEN


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def micro(write_spec):
    return explorer.load_spec(write_spec(TINY))


@pytest.fixture(scope="module")
def corpus():
    return tokenize(CORPUS, "test corpus", get_tokenizer("bytes"), "bytes")


def config(**options):
    return TrainConfig.from_dict({"batch_size": 4, "seq_len": 16, "eval_tokens": 256,
                                  **options})


def run(spec, corpus, seed=1, model=None, **options):
    model = model or explorer.build_model(spec, seed=seed)
    return train(model, spec, config(**options), corpus=corpus, seed=seed)


# -- schedule, evaluation points, budgets: pure functions ------------------------------------

@pytest.mark.parametrize("schedule, step, expected", [
    ("cosine", 5, 5e-4),  # warmup: 1e-3 * 5 / 10
    ("cosine", 10, 1e-3),  # the end of warmup is the peak
    ("cosine", 35, 1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi / 4))),  # a quarter of the decay
    ("cosine", 60, 5.5e-4),  # half way: the mean of lr and min_lr
    ("cosine", 110, 1e-4),  # the last step reaches min_lr
    ("linear", 35, 1e-3 - 9e-4 * 0.25),
    ("linear", 110, 1e-4),
    ("constant", 5, 5e-4),
    ("constant", 110, 1e-3),
])
def test_learning_rate_by_hand(schedule, step, expected):
    cfg = TrainConfig.from_dict({"lr": 1e-3, "min_lr": 1e-4, "warmup": 10, "steps": 110,
                                 "schedule": schedule})
    assert learning_rate(step, cfg, 110) == pytest.approx(expected, rel=1e-12)


def test_eval_steps_by_hand():
    assert eval_steps(20, 64, 10) == [10, 20]
    assert eval_steps(23, 64, 10) == [10, 20, 23]  # and the last step
    # 32 tokens a step, every 100 tokens: the first steps reaching 100, 200, 300 tokens.
    assert eval_steps(10, 32, 50, eval_every_tokens=100) == [4, 7, 10]


def test_budgets_to_steps_by_hand(micro):
    assert budget_steps("tokens", 1_228_800, 16 * 128) == 600  # the sweep
    assert budget_steps("tokens", 1000, 64) == 15  # rounded down: no run exceeds its budget
    cfg = config(budget={"flops": TRAINING_PER_TOKEN * 64 * 10 + 1000})
    assert cfg.resolve(micro).steps == 10
    assert config(budget={"tokens": 640}).resolve(micro).steps == 10
    assert config(budget={"steps": 7}).resolve(micro).steps == 7


def test_training_flops_per_token_by_hand(micro):
    from explorer.measure.costs import static_costs

    costs = static_costs(micro, 16)
    assert costs["training_flops_per_token"] == TRAINING_PER_TOKEN == 46_080
    # embeddings, block matrices, out_proj bias, MLP biases, block norms, final norm, head
    assert costs["parameters"] == (256 * 16 + 32 * 16 + 3072 + 16 + 64 + 16 + 2 * 2 * 16
                                   + 2 * 16 + 256 * 16)


@pytest.mark.parametrize("options, message", [
    ({"lrr": 1}, "train.lrr: unknown setting; did you mean 'lr'?"),
    ({"batch_size": 0}, "train.batch_size: must be >= 1, got 0"),
    ({"lr": "fast"}, "train.lr: expected a number, got 'fast'"),
    ({"lr": 0}, "train.lr: must be > 0, got 0.0"),
    ({"grad_clip": -1}, "train.grad_clip: must be >= 0, got -1"),
    ({"schedule": "cos"}, "train.schedule: 'cos' is not one of 'constant', 'cosine', 'linear'"),
    ({"lr": 1e-3, "min_lr": 1e-2}, "train.min_lr: 0.01 is above lr 0.001"),
    ({"steps": 10, "warmup": 10}, "train.warmup: 10 warmup steps of a 10-step run"),
    ({"budget": {"tokenz": 5}}, "train.budget.tokenz: unknown budget unit; did you mean "
                                "'tokens'?"),
    ({"budget": {"tokens": -1}}, "train.budget.tokens: must be >= 1, got -1"),
    ({"budget": {"flops": 0}}, "train.budget.flops: must be > 0, got 0.0"),
    ({"budget": {"tokens": 1.5}}, "train.budget.tokens: expected an integer, got 1.5"),
    ({"budget": {"tokens": 5, "steps": 2}}, "train.budget: expected one of {steps: N}"),
    ({"device": "gpu"}, "train.device: 'gpu' is not a device; auto, cpu, cuda, cuda:N or mps"),
    ({"device": "cpu:0"}, "train.device: 'cpu:0' is not a device"),
    ({"dtype": "fp16"}, "train.dtype: 'fp16' is not one of 'float32', 'bfloat16', 'float16'"),
    ({"compile": "yes"}, "train.compile: expected true or false, got 'yes'"),
    ({"eval_every": 5, "eval_every_tokens": 100}, "train.eval_every_tokens: given together "
                                                  "with eval_every"),
])
def test_bad_settings_are_one_line_naming_the_key(options, message):
    with pytest.raises(explorer.SpecError) as error:
        TrainConfig.from_dict(options, "s.yaml")
    assert str(error.value).startswith(f"s.yaml: {message}")
    assert "\n" not in str(error.value)


def test_settings_read_as_yaml_writes_them(micro):
    cfg = TrainConfig.from_dict({"lr": "1e-3", "budget": {"tokens": "1.2e6"}, "steps": 2.0})
    assert (cfg.lr, cfg.budget, cfg.steps) == (1e-3, {"tokens": 1_200_000}, 2)


def test_resolve_names_what_does_not_fit_the_model(micro):
    with pytest.raises(explorer.SpecError, match=r"train.seq_len: 64 is longer than "
                                                 r"model.context_length 32"):
        config(seq_len=64).resolve(micro)
    with pytest.raises(explorer.SpecError, match=r"train.budget: \{tokens: 10\} is less than "
                                                 r"one step of 4 x 16 tokens; at least 64"):
        config(budget={"tokens": 10}).resolve(micro)
    with pytest.raises(explorer.SpecError, match=r"train.steps: 5 disagrees with budget "
                                                 r"\{tokens: 640\}, which gives 10 steps"):
        config(steps=5, budget={"tokens": 640}).resolve(micro)


def test_analysis_options_merged_over_defaults_read_as_given(micro):
    # the train analysis gets every option, defaults included: only changed ones count as given
    options = {**{p.name: p.default for p in TrainConfig.params()}, "budget": {"tokens": 640},
               "batch_size": 4, "seq_len": 16}
    cfg = TrainConfig.from_options(options, "s.yaml")
    assert cfg.given == {"budget", "batch_size", "seq_len"}
    assert cfg.resolve(micro).steps == 10  # steps: 200 (the default) does not contradict it
    with pytest.raises(explorer.SpecError, match="^s.yaml: analyses.train.lr: must be > 0, got -1"):
        TrainConfig.from_options({**options, "lr": -1.0}, "s.yaml")


def test_the_train_analysis_options_can_come_from_the_config():
    params = {p.name: p for p in TrainConfig.params()}
    assert params["steps"].default == 200 and params["steps"].type is int
    assert params["schedule"].choices == ("constant", "cosine", "linear")
    assert params["budget"].default == {} and params["budget"].type is dict
    assert "given" not in params


# -- the loop -------------------------------------------------------------------------------

def test_a_run_reports_curves_at_token_counts_that_line_up_across_batch_sizes(micro, corpus):
    small = run(micro, corpus, batch_size=2, eval_every_tokens=128, budget={"tokens": 640})
    large = run(micro, corpus, batch_size=4, eval_every_tokens=128, budget={"tokens": 640})
    assert [p["step"] for p in small["curve"]] == [0, 4, 8, 12, 16, 20]
    assert [p["step"] for p in large["curve"]] == [0, 2, 4, 6, 8, 10]
    assert [p["tokens"] for p in small["curve"]] == [p["tokens"] for p in large["curve"]] == [
        0, 128, 256, 384, 512, 640]
    assert small["tokens_seen"] == large["tokens_seen"] == 640
    assert len(small["batch_losses"]) == 20
    best = min(small["curve"], key=lambda p: p["val_loss"])
    assert (small["best_val_loss"], small["best_step"]) == (best["val_loss"], best["step"])
    assert small["final_val_loss"] == small["curve"][-1]["val_loss"]
    assert small["tokens_per_second"] == pytest.approx(640 / small["train_seconds"])
    assert small["curve"][0]["val_loss"] == pytest.approx(math.log(256), abs=0.5)


def test_a_run_is_seeded_and_leaves_the_global_random_state_alone(micro, corpus):
    state = torch.random.get_rng_state()
    first = run(micro, corpus, seed=1, steps=6, eval_every=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = run(micro, corpus, seed=1, steps=6, eval_every=3)
    other = run(micro, corpus, seed=2, steps=6, eval_every=3)
    timing = ("train_seconds", "eval_seconds", "tokens_per_second", "first_step_seconds")
    assert {k: v for k, v in first.items() if k not in timing} == {
        k: v for k, v in again.items() if k not in timing}
    assert other["batch_losses"] != first["batch_losses"]
    # one seed, independent streams for batches and dropout (stable: sha256 of the seed)
    assert derive_seed(1, "batches") == 8762446635534519364
    assert derive_seed(1, "dropout") == 6720240434562685230


def test_clipping_scales_the_global_norm_to_the_limit(micro, corpus):
    clipped_cfg = config(grad_clip=0.01, steps=3).resolve(micro)
    plain_cfg = config(steps=3).resolve(micro)
    runs = [_Run(explorer.build_model(micro, seed=1).train(), micro, cfg, corpus, 1,
                 torch.device("cpu")) for cfg in (clipped_cfg, plain_cfg)]
    _, _, norm = runs[0].step(1, 3)
    runs[1].step(1, 3)  # the same weights and the same batch, unclipped

    def global_norm(model):
        return math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters()))

    assert norm == pytest.approx(global_norm(runs[1].model), rel=1e-5)  # the norm before clipping
    assert norm > 0.01
    assert global_norm(runs[0].model) == pytest.approx(0.01, rel=1e-4)
    result = run(micro, corpus, steps=3, grad_clip=0.01)
    assert result["grad_clip"]["clipped_steps"] == 3


def test_a_nan_loss_stops_the_run_at_its_step_naming_the_module(micro, corpus):
    model = explorer.build_model(micro, seed=1)
    with torch.no_grad():
        model.out_head.weight.fill_(float("nan"))
    with pytest.raises(DivergedError) as error:
        run(micro, corpus, model=model, steps=5)
    assert str(error.value) == ("train: diverged at step 1 of 5 (64 tokens): the loss is nan, "
                                "first non-finite output at out_head; lower train.lr or set "
                                "train.grad_clip")
    assert error.value.step == 1


class _Aux(torch.nn.Module):
    """A module with an auxiliary loss, 0.5 * |w|^2, that turns NaN at ``nan_at`` (if given)."""

    def __init__(self, nan_at=None, give=True):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
        self.nan_at, self.give, self.calls = nan_at, give, 0

    def explorer_aux_loss(self):
        self.calls += 1
        if not self.give:
            return None
        if self.calls == self.nan_at:
            return torch.tensor(float("nan"))
        return 0.5 * self.w.pow(2).sum()


def test_auxiliary_losses_are_added_to_what_is_backpropagated(micro, corpus):
    results, modules = [], []
    for give in (True, False):
        model = explorer.build_model(micro, seed=1)
        model.add_module("aux", _Aux(give=give))
        results.append(run(micro, corpus, model=model, steps=1, lr=0.1, weight_decay=0.0))
        modules.append(model.aux)
    with_aux, without = results
    assert with_aux["aux_losses"][0] == pytest.approx(0.5 * (1 + 4 + 9))
    assert "aux_losses" not in without
    # w takes no part in the forward pass: the cross-entropy is the same, w moved only by its
    # auxiliary gradient (Adam's first step moves each entry by lr towards 0: -lr * g / |g|).
    assert with_aux["batch_losses"] == without["batch_losses"]
    assert modules[0].w.tolist() == pytest.approx([0.9, -1.9, 2.9], abs=1e-6)
    assert modules[1].w.tolist() == [1.0, -2.0, 3.0]


def test_a_nan_auxiliary_loss_names_its_module(micro, corpus):
    model = explorer.build_model(micro, seed=1)
    model.add_module("aux", _Aux(nan_at=3))
    with pytest.raises(DivergedError, match=r"^train: diverged at step 3 of 5 \(192 tokens\): "
                                            r"the auxiliary loss of aux is nan;"):
        run(micro, corpus, model=model, steps=5)


def test_a_corpus_too_short_for_the_window_says_so(micro):
    short = tokenize("tiny text here", "short.txt", get_tokenizer("bytes"), "bytes")
    with pytest.raises(explorer.ExplorerError, match=r"train: corpus short.txt has 14 tokens: "
                                                     r"its train \(12\) and validation \(2\)"):
        run(micro, short, steps=2)
