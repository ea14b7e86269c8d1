"""Parameters are validated when the spec loads, through the registry: Param ranges, the
components' and analyses' cross-field checks, the vocabulary against the tokenizer. The same
one line and exit code 2 whatever --only asks for, and no model is ever built."""

import pytest

import explorer
from explorer import Analysis, Component, Param, ParamError, hookimpl
from tests.helpers import run_cli

TINY = "specs/tiny.yaml"  # 4 heads, context 128, byte tokens, vocab 256

# (overrides, the one line after "Error: "): each was accepted at load time before, and failed
# later (or never) in a way that depended on --only.
BAD = [
    (["components.attention=gqa", "components.attention.n_kv_heads=3"],
     "--set components.attention.n_kv_heads: 3 key/value heads cannot be shared by n_heads 4 "
     "query heads; a divisor of n_heads: 1, 2, 4"),
    (["components.attention=gqa", "components.attention.n_kv_heads=0"],
     "--set components.attention.n_kv_heads: must be >= 1, got 0"),
    (["components.ffn.expansion=0"], "--set components.ffn.expansion: must be >= 1, got 0"),
    (["components.ffn=glu", "components.ffn.hidden=-4"],
     "--set components.ffn.hidden: must be >= 0, got -4"),
    (["components.ffn=glu", "components.ffn.multiple_of=0"],
     "--set components.ffn.multiple_of: must be >= 1, got 0"),
    (["components.attention.window=-1"], "--set components.attention.window: must be >= 0, got -1"),
    (["components.positional=rope", "components.positional.theta=0"],
     "--set components.positional.theta: must be > 0, got 0.0"),
    (["components.positional=sinusoidal", "components.positional.base=-2"],
     "--set components.positional.base: must be > 0, got -2.0"),
    (["components.norm.eps=-1"], "--set components.norm.eps: must be > 0, got -1.0"),
    (["components.norm=rmsnorm", "components.norm.eps=0"],
     "--set components.norm.eps: must be > 0, got 0.0"),
    (["components.norm.eps=.nan"], "--set components.norm.eps: expected a finite number, got nan"),
    (["analyses.train.lr=.inf"], "--set analyses.train.lr: expected a finite number, got inf"),
    (["components.positional=rope", "model.n_heads=64"],
     "--set components.positional: rope rotates pairs of dimensions, but the head size is odd: "
     "emb_dim 64 / n_heads 64 = 1; choose emb_dim / n_heads even"),
    (["analyses.summary.depth=-1"], "--set analyses.summary.depth: must be >= 0, got -1"),
    (["analyses.memory.batch_size=0"], "--set analyses.memory.batch_size: must be >= 1, got 0"),
    (["analyses.memory.seq_len=129"], "--set analyses.memory.seq_len: 129 is longer than "
                                      "model.context_length 128; 1..128, or 0 for the context length"),
    (["analyses.flops.seq_len=-1"], "--set analyses.flops.seq_len: must be >= 0, got -1"),
    (["analyses.flops.seq_len=500"], "--set analyses.flops.seq_len: 500 is longer than "
                                     "model.context_length 128; 1..128, or 0 for the context length"),
    (["analyses.train.steps=0"], "--set analyses.train.steps: must be >= 1, got 0"),
    (["analyses.train.lr=0"], "--set analyses.train.lr: must be > 0, got 0.0"),
    (["analyses.train.seq_len=1024"], "--set analyses.train.seq_len: 1024 is longer than "
                                      "model.context_length 128; 1..128, or 0 for the context length"),
    (["analyses.gradflow.steps=-1"], "--set analyses.gradflow.steps: must be >= 0, got -1"),
    (["analyses.samples.top_p=1.5"], "--set analyses.samples.top_p: must be <= 1, got 1.5"),
    (["analyses.samples.temperature=-1"], "--set analyses.samples.temperature: must be >= 0, got -1.0"),
    (["analyses.samples.prompts=[Hi, 7]"], "--set analyses.samples.prompts: prompt 1 is 7, not "
                                           'text; a list of non-empty strings, e.g. ["Hello, I am"]'),
    (["model.vocab_size=97"], "--set model.vocab_size: 97 is smaller than the bytes tokenizer's "
                              "256 tokens; use vocab_size >= 256"),
    (["tokenizer=gpt2"], f"{TINY}: model.vocab_size: 256 is smaller than the gpt2 tokenizer's "
                         "50,257 tokens; use vocab_size >= 50257 or tokenizer: bytes (256)"),
]


@pytest.fixture
def no_model_is_built(monkeypatch):
    from explorer.model.gpt import GPTModel

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built")
    monkeypatch.setattr(GPTModel, "__init__", refuse)


@pytest.mark.parametrize("overrides, line", BAD, ids=[" ".join(o) for o, _ in BAD])
@pytest.mark.parametrize("only", ["params", "samples"])
def test_bad_values_are_one_line_at_load_whatever_only_says(capsys, no_model_is_built, overrides,
                                                            line, only):
    sets = [arg for text in overrides for arg in ("--set", text)]
    code, out, err = run_cli(capsys, "build", TINY, "--only", only, *sets)
    assert (code, out) == (2, "")
    assert err == f"Error: {line}\n"


def test_a_key_from_the_file_names_the_file(write_spec):
    path = write_spec({"name": "t", "tokenizer": "bytes",
                       "model": {"vocab_size": 256, "context_length": 16, "emb_dim": 16,
                                 "n_heads": 4, "n_layers": 1},
                       "components": {"attention": {"name": "gqa", "n_kv_heads": 3}},
                       "analyses": {"train": {"seq_len": 17}}})
    with pytest.raises(explorer.SpecError) as info:
        explorer.load_spec(path)
    assert str(info.value) == (f"{path}: components.attention.n_kv_heads: 3 key/value heads "
                               "cannot be shared by n_heads 4 query heads; a divisor of n_heads: "
                               "1, 2, 4")
    with pytest.raises(explorer.SpecError) as info:
        explorer.load_spec(path, overrides=["components.attention.n_kv_heads=2"])
    assert str(info.value) == (f"{path}: analyses.train.seq_len: 17 is longer than "
                               "model.context_length 16; 1..16, or 0 for the context length")


def test_a_default_that_a_changed_size_breaks_names_who_chose_the_component(write_spec):
    # n_kv_heads 2 is written in the base; the child's n_heads 3 breaks it: the base set the key.
    base = write_spec({"name": "b", "tokenizer": "bytes",
                       "model": {"vocab_size": 256, "context_length": 16, "emb_dim": 12,
                                 "n_heads": 4, "n_layers": 1},
                       "components": {"attention": {"name": "gqa", "n_kv_heads": 2}}},
                      name="base.yaml")
    child = write_spec({"extends": "base.yaml", "model": {"n_heads": 3}}, name="child.yaml")
    with pytest.raises(explorer.SpecError, match=rf"^{base}: components\.attention\.n_kv_heads: "
                                                 "2 key/value heads cannot be shared by n_heads 3"):
        explorer.load_spec(child)


# -- the API a plugin uses --------------------------------------------------------------------

@pytest.mark.parametrize("param, value, message", [
    (Param("n", int, 1, min=1), 0, "must be >= 1, got 0"),
    (Param("x", float, 1.0, min=0, exclusive_min=True), 0.0, "must be > 0, got 0.0"),
    (Param("x", float, 1.0, min=0, max=1, exclusive_min=True), 1.5, "must be <= 1, got 1.5"),
    (Param("x", float, 1.0, max=2), float("nan"), "expected a finite number, got nan"),
    (Param("x", float, 1.0), float("-inf"), "expected a finite number, got -inf"),
    (Param("n", int, 1, min=1), "1", "expected an integer, got '1'"),
    (Param("s", str, "a", choices=("a", "b")), "c", "'c' is not one of 'a', 'b'"),
])
def test_param_check_says_what_is_wrong(param, value, message):
    with pytest.raises(ParamError) as info:
        param.check(value)
    assert (info.value.param, str(info.value)) == (param.name, message)
    assert isinstance(info.value, explorer.ExplorerError)  # one way to fail: the CLI's one line


def test_param_bounds_are_inclusive_unless_exclusive_min():
    assert Param("n", int, 1, min=1, max=3).check(1) == 1
    assert Param("n", int, 1, min=1, max=3).check(3) == 3
    assert Param("x", float, 1.0, min=0).check(0) == 0.0
    assert Param("x", float, 1.0, min=0, max=1, exclusive_min=True).range_text == "> 0, <= 1"


def _widths_differ(config, params):
    if params["inner"] == config.emb_dim:
        raise ParamError("inner", f"{params['inner']} equals emb_dim", "any other width")


def _width_not_emb_dim(config, options):
    if options["width"] == config.emb_dim:
        raise ParamError("width", f"{options['width']} equals emb_dim", "any other width")


def _whole_choice(config, params):
    raise ParamError(None, "never fits", "choose another norm")


def _buggy(config, params):
    return params["missing"]


class Checked:
    @hookimpl
    def explorer_components(self):
        ident = "torch.nn:Identity"
        return [
            Component("activation", "checked", ident, (Param("inner", int, 8, min=1),),
                      check=_widths_differ),
            Component("norm", "never", ident, check="tests.spec.test_validation:_whole_choice"),
            Component("ffn", "buggy", ident, check=_buggy),
        ]

    @hookimpl
    def explorer_analyses(self):
        return [Analysis("windowed", run=lambda ctx, width: {}, default=False,
                         params=(Param("width", int, 4, min=1),), check=_width_not_emb_dim)]


def checked_spec(write_spec, **components):
    doc = {"name": "t", "tokenizer": "bytes",
           "model": {"vocab_size": 256, "context_length": 16, "emb_dim": 16, "n_heads": 4,
                     "n_layers": 1}, "components": components}
    plugins = explorer.get_plugin_manager(entry_points=False)
    plugins.register(Checked(), "checked-plugin")
    path = write_spec(doc)
    return path, lambda *overrides: explorer.load_spec(path, overrides=overrides, plugins=plugins)


def test_a_plugin_check_runs_at_load_and_names_its_key(write_spec):
    path, load = checked_spec(write_spec, activation={"name": "checked", "inner": 16})
    with pytest.raises(explorer.SpecError) as info:
        load()
    assert str(info.value) == (f"{path}: components.activation.inner: 16 equals emb_dim; "
                               "any other width")
    assert load("components.activation.inner=4").components["activation"].params == {"inner": 4}
    with pytest.raises(explorer.SpecError) as info:
        load("components.activation.inner=4", "analyses.windowed.width=16")
    assert str(info.value) == "--set analyses.windowed.width: 16 equals emb_dim; any other width"


def test_a_check_given_as_a_string_and_about_the_whole_choice(write_spec):
    path, load = checked_spec(write_spec, norm="never")
    with pytest.raises(explorer.SpecError) as info:
        load()
    assert str(info.value) == f"{path}: components.norm: never fits; choose another norm"


def test_a_check_that_crashes_is_the_plugins_fault(write_spec):
    _, load = checked_spec(write_spec, ffn="buggy")
    with pytest.raises(explorer.PluginError, match="^plugin checked-plugin: the check of ffn "
                                                   "'buggy' raised KeyError: 'missing'$"):
        load()


def test_every_tokenizer_declares_the_vocabulary_it_produces():
    registry = explorer.get_plugin_manager(entry_points=False).registry()
    for name in registry.names("tokenizer"):
        declared = registry.component("tokenizer", name).n_vocab
        assert declared == explorer.get_tokenizer(name).n_vocab, name
    assert registry.component("tokenizer", "gpt2").n_vocab == 50_257
