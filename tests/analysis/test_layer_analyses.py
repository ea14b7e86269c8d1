"""Every analysis on layers that differ, mixtures of experts and latent attention: parameters
(total and active), FLOPs per layer with active experts (equal to FlopCounterMode on meta), the
KV cache per layer, the train probe's auxiliary loss and expert load, per-expert gradflow.

The layout spec (4 layers, width 16, 4 heads of 4, gqa with 2 KV heads, rmsnorm, silu, rope):
layer 0 a glu of 24, layers 1-3 an MoE of 4 experts of 8 (top 2, one shared); windows of 4 on
layers 1 and 3; NoPE on layer 3. By hand, per block: attention q 16x16 + k 16x8 + v 16x8 + out
16x16 = 768; two rmsnorms 32; glu 3 * 16 * 24 = 1,152; MoE router 16 * 4 = 64, each expert (and
the shared one) 3 * 16 * 8 = 384: 1,984 held, 64 + 384 + 2 * 384 = 1,216 used per token.
"""

import copy

import pytest
import torch
from torch.nn import functional as F

import explorer
from explorer.model import contracts
from tests.helpers.layouts import COMPONENTS, LAYOUT, MLA, MODEL, MOE

pytestmark = pytest.mark.usefixtures("one_thread")

MLA_MATRICES = 16 * 40 + 16 * 16 + 12 * 44 + 20 * 16

ATTENTION, NORMS, GLU, MOE_HELD, MOE_USED = 768, 32, 1152, 1984, 1216
S = 32  # the context length, which the analyses use by default


def spec_of(write_spec, components=COMPONENTS, layers=LAYOUT, **analyses):
    return explorer.load_spec(write_spec({
        "name": "layout", "seed": 123, "tokenizer": "bytes", "model": MODEL,
        "components": components, "layers": layers, "analyses": analyses}))


@pytest.fixture
def layout(write_spec):
    return spec_of(write_spec)


def run(spec, name):
    report = explorer.analyze(spec, only=[name])
    assert not report["failures"], report["failures"]
    return report["analyses"][name]


# -- params ----------------------------------------------------------------------------------------

def test_params_total_and_active_per_block(layout):
    result = run(layout, "params")
    blocks = [ATTENTION + NORMS + GLU] + [ATTENTION + NORMS + MOE_HELD] * 3
    assert [b["total"] for b in result["per_block"]] == blocks
    assert result["active_per_block"] == [blocks[0]] + [ATTENTION + NORMS + MOE_USED] * 3
    embedding_and_head = 2 * 256 * 16 + 16  # the final norm too
    assert result["total"] == embedding_and_head + sum(blocks) == 18_512
    assert result["active"] == 18_512 - 3 * (MOE_HELD - MOE_USED) == 16_208


def test_a_block_that_reports_its_own_active_count_is_counted_by_it(make_spec):
    """A plugin block with ``active_parameters()`` (explorer.model.contracts point 7): the per-block
    figures and the total both take its word, as for any module that reports one."""
    spec = make_spec()
    model = explorer.build_model(spec)
    for block in model.trf_blocks:
        block.active_parameters = lambda: 7
    result = explorer.analyze(spec, only=["params"], model=model)["analyses"]["params"]
    held = [b["total"] for b in result["per_block"]]
    assert result["active_per_block"] == [7] * len(held)
    assert result["active"] == result["total"] - sum(held) + 7 * len(held)


def test_params_text_groups_blocks_alike(layout):
    text = layout.plugin_manager.registry().analysis("params").load_render()(run(layout, "params"))
    assert "active per token          16,208  (87.6% of the total)" in text
    assert "block 0: attention 768, ffn 1,152, norm 32, total 1,952" in text
    assert "blocks 1-3: attention 768, ffn 1,984, norm 32, total 2,784, active 2,016" in text


# -- flops -----------------------------------------------------------------------------------------

def test_flops_per_layer_with_active_experts(layout):
    result = run(layout, "flops")
    attention = 2 * S * 4 * (4 + 4)  # 2 * s * n_heads * (d_qk + d_v)
    assert [(l["matmul"], l["attention_full"]) for l in result["per_layer"]] == (
        [(2 * (ATTENTION + GLU), attention)] + [(2 * (ATTENTION + MOE_USED), attention)] * 3)
    assert result["matmul_parameters"] == 4 * ATTENTION + GLU + 3 * MOE_HELD
    assert result["active_matmul_parameters"] == 4 * ATTENTION + GLU + 3 * MOE_USED
    total = 2 * (4 * ATTENTION + GLU + 3 * MOE_USED) + 4 * attention + 2 * 16 * 256
    assert result["forward_per_token"]["total"] == total == 32_128
    # FlopCounterMode on meta, where the MoE routes an equal share to each expert: exact.
    assert result["measured"]["forward"] == S * total
    assert result["measured"]["forward_and_backward"] == 3 * S * total
    assert result["training_per_token"]["6N_active_nonembedding"] == 6 * (16_208 - 2 * 256 * 16)


@pytest.mark.parametrize("q_lora_rank", [0, 8])
def test_flops_of_latent_attention(write_spec, q_lora_rank):
    """Scores over nope + rope = 10 per head, values of 5: 2 * s * 4 * (10 + 5) per layer; with
    q_lora_rank 8 the query goes 16 -> 8 -> 40 instead of 16 -> 40."""
    spec = spec_of(write_spec, {**COMPONENTS, "ffn": {"name": "glu", "hidden": 24},
                                "attention": {**MLA, "q_lora_rank": q_lora_rank}}, layers=[])
    result = run(spec, "flops")
    matrices = MLA_MATRICES + (16 * 8 + 8 * 40 - 16 * 40 if q_lora_rank else 0)
    per_layer = 2 * (matrices + GLU) + 2 * S * 4 * 15
    assert [l["attention_full"] for l in result["per_layer"]] == [2 * S * 4 * 15] * 4
    assert result["forward_per_token"]["total"] == 4 * per_layer + 2 * 16 * 256
    assert result["measured"]["forward"] == S * result["forward_per_token"]["total"]


def test_flops_text_shows_layers_that_differ(layout):
    text = layout.plugin_manager.registry().analysis("flops").load_render()(run(layout, "flops"))
    assert "matmuls 2*N (7,872 of 10,176 block weights active per token)" in text
    assert "    0 (1): 3,840 FLOP + 2,048 FLOP\n    1-3 (3): 3,968 FLOP + 2,048 FLOP" in text


# -- memory: weights with every expert, the KV cache per layer ----------------------------------

def test_memory_counts_every_expert_and_caches_per_layer(layout):
    result = run(layout, "memory")
    assert result["weights_bytes"]["fp32"] == 4 * 18_512
    kv = result["kv_cache"]
    per_layer = 2 * 2 * 4  # K and V, 2 heads of 4
    assert [(l["window"], l["tokens"], l["values_per_token"]) for l in kv["per_layer"]] == [
        (0, S, per_layer), (4, 4, per_layer)] * 2
    assert kv["bytes_per_token"] == {"fp32": 4 * 4 * per_layer, "bf16": 2 * 4 * per_layer}
    assert kv["bytes_full_context"]["fp32"] == 4 * per_layer * (S + 4 + S + 4) == 4_608
    text = layout.plugin_manager.registry().analysis("memory").load_render()(result)
    assert "  layers 0,2: 2 KV heads x 4, 16 values per token, 32 tokens\n" \
           "  layers 1,3: 2 KV heads x 4, window 4, 16 values per token, 4 tokens" in text


def test_memory_kv_cache_of_latent_layers(write_spec):
    """mla on even layers caches kv_lora_rank 12 + rope 4 = 16 values; gqa on odd ones 16 too,
    so use 1 KV head there: 2 * 1 * 4 = 8."""
    spec = spec_of(write_spec, {**COMPONENTS, "attention": {"name": "gqa", "n_kv_heads": 1}},
                   layers=[{"every": 2, "components": {"attention": MLA}}])
    kv = run(spec, "memory")["kv_cache"]
    assert [l["values_per_token"] for l in kv["per_layer"]] == [16, 8, 16, 8]
    assert kv["bytes_per_token"]["bf16"] == 2 * (16 + 8 + 16 + 8)


# -- train: the auxiliary loss in the loss, the expert load on the curve ---------------------------

TRAIN = {"steps": 2, "batch_size": 2, "seq_len": 8, "eval_every": 1, "eval_tokens": 64}


def _recording(spec):
    """The spec's model, recording after each training-mode forward (the train analysis trains
    a copy, which keeps the hook) its auxiliary loss and module statistics."""
    model = explorer.build_model(spec)
    records = []

    def record(module, inputs, output):
        if module.training:
            records.append((contracts.aux_loss(module)[0].item(), contracts.stats(module)))

    model.register_forward_hook(record)
    return model, records


def test_train_adds_the_aux_loss_and_logs_the_expert_load(write_spec):
    spec = spec_of(write_spec, train={**TRAIN, "steps": 1})
    model, records = _recording(spec)
    report = explorer.analyze(spec, only=["train"], model=model)
    assert not report["failures"], report["failures"]
    result = report["analyses"]["train"]
    (aux, stats), = records  # one training step: one training-mode forward
    assert result["aux_losses"] == [pytest.approx(aux, rel=1e-6)]
    assert list(result["stats"]) == ["trf_blocks.1.ff", "trf_blocks.2.ff", "trf_blocks.3.ff"]
    for name, found in result["stats"].items():
        assert found["expert_load"] == pytest.approx(stats[name]["expert_load"])
        assert sum(found["expert_load"]) == pytest.approx(1.0)
        # 2 x 8 tokens, 2 experts each: every share is a multiple of 1/32.
        assert all(32 * x == pytest.approx(round(32 * x)) for x in found["expert_load"])
    point = result["curve"][-1]
    assert point["aux_loss"] == result["aux_losses"][0] and point["stats"] == result["stats"]
    assert "aux_loss" not in result["curve"][0]  # step 0: no training forward yet


def test_the_aux_loss_changes_what_training_learns(write_spec):
    """The LM loss of step 2 follows step 1's update: it differs when only the aux loss does."""
    def losses(coef):
        moe = {**MOE, "aux_loss_coef": coef, "z_loss_coef": 0.0}
        spec = spec_of(write_spec, {**COMPONENTS, "ffn": moe}, train=TRAIN)
        return run(spec, "train")
    plain, weighted = losses(0.0), losses(10.0)
    assert not plain.get("aux_losses") and "aux_loss" not in plain["curve"][-1]
    assert plain["batch_losses"][0] == weighted["batch_losses"][0]
    assert plain["batch_losses"][1] != weighted["batch_losses"][1]


def test_train_text_shows_aux_loss_and_expert_load(write_spec):
    spec = spec_of(write_spec, train=TRAIN)
    result = run(spec, "train")
    text = spec.plugin_manager.registry().analysis("train").load_render()(result)
    header = next(line for line in text.splitlines() if line.startswith(" step"))
    assert header.endswith("  aux loss")
    last = next(line for line in text.splitlines() if line.startswith("    2  "))
    assert last.endswith(f"  {result['curve'][2]['aux_loss']:>8.4f}")
    load = " ".join(f"{x:.3f}" for x in result["stats"]["trf_blocks.1.ff"]["expert_load"])
    assert f"  trf_blocks.1.ff: {load}  (" in text


# -- gradflow per expert ---------------------------------------------------------------------------

def test_gradflow_per_expert(layout):
    from explorer.plugins.analyses.gradflow import SAMPLE_TEXT, _expert_grads

    result = run(layout, "gradflow")
    model = explorer.build_model(layout).train()
    ids = torch.tensor([list(SAMPLE_TEXT.encode())[:33]])  # context 32 + 1
    loss = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    assert list(result["per_expert"]) == ["trf_blocks.1.ff", "trf_blocks.2.ff", "trf_blocks.3.ff"]
    for name, grads in result["per_expert"].items():
        experts = model.get_submodule(name).experts
        want = [sum(p.grad.abs().sum().item() for p in e.parameters())
                / sum(p.numel() for p in e.parameters()) for e in experts]
        assert grads == pytest.approx(want, rel=1e-4)
    assert "per_expert" in result["after_steps"]
    text = layout.plugin_manager.registry().analysis("gradflow").load_render()(result)
    first = " ".join(f"{g:.2e}" for g in result["per_expert"]["trf_blocks.1.ff"])
    assert f"experts of trf_blocks.1.ff: {first}" in text
    # An expert no token reached has no gradient: n/a, not 0.
    unused = copy.deepcopy(model)
    for p in unused.trf_blocks[1].ff.experts[3].parameters():
        p.grad = None
    assert _expert_grads(unused)["trf_blocks.1.ff"][3] is None


def test_gradflow_has_no_expert_figures_without_experts(make_spec):
    assert "per_expert" not in run(make_spec(), "gradflow")


def test_static_costs_count_active_experts(layout):
    """What a training budget in FLOPs is turned into steps with: 3 x the forward, which counts
    top_k experts per token (explorer.measure.costs)."""
    from explorer.measure.costs import static_costs

    assert static_costs(layout, S) == {"parameters": 18_512, "forward_flops_per_token": 32_128,
                                       "training_flops_per_token": 3 * 32_128}
