"""The plugin manager uses pluggy properly, and the registry's contracts hold for every built-in:
hooks called through pluggy, blocking with set_blocked, tracing, typed contracts, one source for
each default."""

import inspect
import subprocess
import sys

import pytest

import explorer
from explorer import hookimpl
from explorer.model import contracts
from explorer.registry.components import COMPONENT_KINDS


REGISTRY = explorer.get_plugin_manager(entry_points=False).registry()


class Counting:
    @hookimpl
    def explorer_components(self):
        return [explorer.Component("activation", "counted", "torch.nn:Identity")]


def test_hooks_are_called_through_pluggy_so_monitoring_sees_each_call():
    plugins = explorer.get_plugin_manager(entry_points=False)
    plugins.register(Counting(), "counting")
    calls = []
    plugins.pm.add_hookcall_monitoring(
        lambda hook_name, impls, kwargs: calls.append((hook_name, [i.plugin_name for i in impls])),
        lambda outcome, hook_name, impls, kwargs: None)
    registry = plugins.registry()
    assert ("activation", "counted") in registry.components
    # One call per plugin (so one that raises spoils only itself), in registration order.
    components = [names for hook, names in calls if hook == "explorer_components"]
    assert components[-1] == ["counting"]
    assert [n for [n] in components][:2] == ["explorer.plugins.norm", "explorer.plugins.activation"]
    assert len(components) == len(plugins.pm.hook.explorer_components.get_hookimpls())


def test_disabled_plugins_are_blocked_in_pluggy(monkeypatch):
    monkeypatch.setenv("EXPLORER_DISABLE_PLUGINS", "explorer.plugins.ffn, elsewhere")
    plugins = explorer.get_plugin_manager(entry_points=False)
    assert plugins.pm.is_blocked("explorer.plugins.ffn") and plugins.pm.is_blocked("elsewhere")
    assert plugins.blocked == ["elsewhere", "explorer.plugins.ffn"]
    assert plugins.registry().names("ffn") == []  # mlp, glu and moe: the ffn plugin is blocked
    plugins.pm.register(Counting(), name="elsewhere")  # pluggy itself refuses the name now
    assert "counted" not in plugins.registry().names("activation")


def test_trace_env_traces_every_hook_call_to_stderr():
    code = ("import explorer\n"
            "explorer.get_plugin_manager(entry_points=False).registry()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**_env(), "EXPLORER_TRACE_PLUGINS": "1"})
    lines = proc.stderr.splitlines()
    calls = [line for line in lines if line.strip() == "explorer_components [hook]"]
    assert len(calls) == len(REGISTRY_COMPONENT_PLUGINS), proc.stderr[:500]
    # Each call is preceded by the plugin it goes to.
    assert "explorer_components: plugin explorer.plugins.norm [explorer]" in lines
    assert any(line.strip() == "explorer_analyses [hook]" for line in lines)
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert quiet.stderr == ""


def _env():
    import os
    return {k: v for k, v in os.environ.items() if k != "EXPLORER_TRACE_PLUGINS"}


REGISTRY_COMPONENT_PLUGINS = {p.plugin for (k, _), p in REGISTRY.provider.items()
                              if k not in ("analysis", "checkpoint_format", "config_converter",
                                           "tracker")}


def test_a_test_can_register_and_unregister_through_pluggy():
    plugins = explorer.get_plugin_manager(entry_points=False)
    plugins.register(Counting(), "counting")
    assert "counted" in plugins.registry().names("activation")
    plugins.pm.unregister(name="counting")
    assert "counted" not in plugins.registry().names("activation")


# -- typed contracts ----------------------------------------------------------------------------

CONTRACTS = {"norm": contracts.Norm, "activation": contracts.Activation,
             "ffn": contracts.FeedForward, "attention": contracts.Attention,
             "residual": contracts.Block, "weight_tying": contracts.WeightTying}


@pytest.mark.parametrize("kind, name", [(k, n) for k in COMPONENT_KINDS for n in REGISTRY.names(k)])
def test_every_built_in_component_keeps_its_kinds_contract(make_spec, kind, name):
    params = {"gqa": {"n_kv_heads": 2}, "mamba2": {"head_dim": 8, "d_state": 4}}
    choice = {"name": name, **params.get(name, {})}
    if kind == "attention" and name == "none":  # a block with neither sublayer is refused
        spec = make_spec(attention=choice, ffn="mlp")
    else:
        spec = make_spec(**{kind: choice})
    ctx = explorer.BuildContext(spec, spec.plugin_manager.registry())
    built = ctx.make(kind, **({"dim": 16} if kind == "norm" else {}))
    if kind == "positional":
        assert isinstance(built, contracts.PositionalEncoding)
    else:
        assert isinstance(built, CONTRACTS[kind])
    if kind == "attention" and name == "mla":  # one latent shared by all heads; nope + rope dims
        assert (built.n_heads, built.n_kv_heads, built.head_dim, built.window) == (4, 1, 192, 0)
    elif kind == "attention" and name == "none":  # mixes nothing: no heads, no cache
        assert (built.n_heads, built.n_kv_heads, built.head_dim, built.window) == (0, 0, 0, 0)
    elif kind == "attention" and contracts.state_values_per_sequence(built):  # a recurrent mixer
        assert built.n_kv_heads == 0 and built.window == 0
    elif kind == "attention":
        assert (built.n_heads, built.head_dim, built.window) == (4, 4, 0)
        recurrent = hasattr(built, "new_cache")  # a linear-time mixer: a state, no KV cache
        assert built.n_kv_heads == (2 if name == "gqa" else 0 if recurrent else 4)
        if recurrent:
            assert built.kv_values_per_token == 0 and built.state_values_per_sequence > 0


def test_every_built_in_tokenizer_keeps_the_contract():
    for name in REGISTRY.names("tokenizer"):
        assert isinstance(explorer.get_tokenizer(name), contracts.Tokenizer)


def test_contracts_and_hookspecs_import_without_torch():
    code = ("import sys, explorer.model.contracts, explorer.registry.hookspecs\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_hookspecs_are_annotated():
    from explorer.registry import hookspecs

    assert inspect.signature(hookspecs.explorer_components).return_annotation == "list[Component]"
    assert inspect.signature(hookspecs.explorer_analyses).return_annotation == "list[Analysis]"
    assert inspect.signature(hookspecs.explorer_trackers).return_annotation == "list[Tracker]"


# -- one source for each default -------------------------------------------------------------

def _items():
    for (kind, name), comp in REGISTRY.components.items():
        if kind != "tokenizer":
            yield f"{kind}:{name}", comp.load(), comp.params
    for name, analysis in REGISTRY.analyses.items():
        yield f"analysis:{name}", analysis.load(), analysis.params


@pytest.mark.parametrize("label, target, params", list(_items()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_the_param_is_the_only_default(label, target, params):
    signature = inspect.signature(target)
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    for param in params:
        if takes_all and param.name not in signature.parameters:
            continue  # run(ctx, **options): a typed config validates them (train: TrainConfig)
        assert param.name in signature.parameters, f"{label}: the core passes {param.name}"
        assert signature.parameters[param.name].default is inspect.Parameter.empty, (
            f"{label}: {param.name} repeats the Param's default {param.default!r}")


@pytest.mark.parametrize("source, problem", [
    ("def explorer_components(:\n", "SyntaxError"),
    ("import a_module_that_is_not_installed\n", "ModuleNotFoundError"),
])
def test_a_broken_builtin_is_an_error_naming_it(tmp_path, monkeypatch, capsys, source, problem):
    """A built-in that fails to import is not a silently short registry ("unknown tokenizer
    'bytes'; registered: none") but an error that names the module."""
    from explorer.registry import plugin_manager
    from tests.helpers import run_cli

    (tmp_path / "broken_builtin.py").write_text(source)
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.setattr(plugin_manager, "DEFAULT_PLUGINS",
                        (*plugin_manager.DEFAULT_PLUGINS, "broken_builtin"))
    with pytest.raises(explorer.PluginError, match=rf"^explorer's built-in plugin broken_builtin "
                                                   rf"is broken: failed to import broken_builtin: "
                                                   rf"{problem}: .*; reinstall explorer$"):
        plugin_manager.get_plugin_manager()
    code, out, err = run_cli(capsys, "build", "tiny", "--only", "params")
    assert (code, out) == (2, "")
    assert err.startswith("Error: explorer's built-in plugin broken_builtin is broken: ")


def test_an_unknown_name_is_an_explorer_error_in_two_halves_not_a_key_error():
    with pytest.raises(explorer.errors.UnknownNameError) as info:
        REGISTRY.component("norm", "layernrom")
    error = info.value
    assert isinstance(error, explorer.ExplorerError) and not isinstance(error, KeyError)
    assert str(error) == ("unknown norm component 'layernrom'; did you mean 'layernorm'? "
                          "registered: layernorm, none, rmsnorm")
    # The halves a caller places under its own file and key: SpecError(source, key, *halves).
    assert (error.problem, error.valid) == ("unknown norm component 'layernrom'",
                                            "did you mean 'layernorm'? registered: layernorm, "
                                            "none, rmsnorm")
    with pytest.raises(explorer.errors.UnknownNameError, match=r"^unknown analysis 'zzz'; "
                                                               r"registered: coordcheck, flops, "):
        REGISTRY.analysis("zzz")  # nothing close: no "did you mean"
    with pytest.raises(explorer.errors.UnknownNameError, match=r"^unknown tokenizer 'gtp2'; did "
                                                               r"you mean 'gpt2'\? registered: "
                                                               r"bytes, gpt2$"):
        REGISTRY.component("tokenizer", "gtp2")  # a kind that is not a component's: as it is


def test_every_did_you_mean_has_one_wording():
    from explorer.errors import did_you_mean

    assert did_you_mean("n_head", ["n_heads", "n_layers"]) == "did you mean 'n_heads'? "
    assert did_you_mean("zzz", ["n_heads"]) == ""
    assert did_you_mean("gpt2_smal", ["gpt2_small", "gpt2_xl", "gpt2_small_openai", "tiny"],
                        n=3) == "did you mean 'gpt2_small', 'gpt2_xl' or 'gpt2_small_openai'? "
    # An alias is matched and stands for its name: shown once, as the name.
    assert did_you_mean("llama3_8", ["models/llama3_8b"], n=3,
                        aliases={"llama3_8b": "models/llama3_8b"}) == \
        "did you mean 'models/llama3_8b'? "
