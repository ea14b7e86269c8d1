"""The analyses on a hybrid of linear-time mixers and softmax attention: memory reports the
recurrent state per sequence (constant in the context length) beside the KV bytes per token of
the softmax layers; FLOPs count the chunked form and equal FlopCounterMode; params and gradflow
see the mixers under the attention kind; the compact shape-only model stands for the stack.

The spec (4 layers, width 16, 4 heads of 4, rmsnorm, glu of 64, rope): layers 0 and 2 gated
DeltaNet (chunks of 8), layers 1 and 3 gqa with 2 KV heads and the output gate. By hand:
gated DeltaNet: W_query, W_key, W_value, W_gate 4 * 16 * 16, W_beta and W_decay 2 * 16 * 4,
conv 48 channels x 4, dt_bias, A_log and the gated norm 3 * 4: 1,612 parameters; its state the
conv's last 3 inputs of 48 channels and 4 matrices of 4 x 4: 144 + 64 = 208 values. gqa: q 256,
k and v 128 each, the gate 256, out 256 + its bias 16: 1,040.
"""

import pytest

import explorer

pytestmark = pytest.mark.usefixtures("one_thread")

DELTANET_PARAMS, GATED_GQA_PARAMS, STATE_VALUES = 1612, 1040, 208


def hybrid(write_spec, context_length=64, n_layers=4, **analyses):
    return explorer.load_spec(write_spec({
        "name": "hybrid", "seed": 123, "tokenizer": "bytes",
        "model": {"vocab_size": 256, "context_length": context_length, "emb_dim": 16,
                  "n_heads": 4, "n_layers": n_layers, "qkv_bias": False, "drop_rate": 0.0},
        "components": {"attention": {"name": "gqa", "n_kv_heads": 2, "output_gate": True},
                       "positional": "rope", "norm": "rmsnorm", "ffn": {"name": "glu", "hidden": 64},
                       "activation": "silu"},
        "layers": [{"every": 2, "offset": 0,
                    "components": {"attention": {"name": "gated_deltanet", "chunk_size": 8}}}],
        "analyses": analyses}))


def run(spec, name):
    report = explorer.analyze(spec, only=[name])
    assert not report["failures"], report["failures"]
    return report["analyses"][name]


def test_memory_reports_state_per_sequence_beside_kv_per_token(write_spec):
    short, long = (run(hybrid(write_spec, n), "memory")["kv_cache"] for n in (64, 256))
    for kv in (short, long):  # the state does not grow with the context; the KV cache does
        assert kv["state_bytes_per_sequence"] == {"fp32": 4 * 2 * STATE_VALUES,
                                                  "bf16": 2 * 2 * STATE_VALUES}
        assert [(l["state_values_per_sequence"], l["values_per_token"]) for l in kv["per_layer"]] \
            == [(STATE_VALUES, 0), (0, 2 * 2 * 4)] * 2
        assert kv["bytes_per_token"]["fp32"] == 4 * 2 * 16  # the two softmax layers only
    assert short["bytes_full_context"]["fp32"] == 1664 + 128 * 64
    assert long["bytes_full_context"]["fp32"] == 1664 + 128 * 256
    spec = hybrid(write_spec)
    text = spec.plugin_manager.registry().analysis("memory").load_render()(run(spec, "memory"))
    assert "recurrent state (linear-time mixers): 1,664 / 832 bytes per sequence fp32 / bf16" in text
    assert "  layers 0,2: recurrent state, 208 values per sequence\n" \
           "  layers 1,3: 2 KV heads x 4, 16 values per token, 64 tokens" in text


@pytest.mark.parametrize("seq_len", [64, 61])  # 61: a last chunk of 5
def test_flops_count_the_chunked_form_and_equal_flop_counter_mode(write_spec, seq_len):
    result = run(hybrid(write_spec, flops={"seq_len": seq_len}), "flops")
    chunks = -(-seq_len // 8)  # 61 tokens: 8 chunks of 8, the last padded
    # Per chunk of 8 and head: k_beta k^T and q k^T 8*8*4 each, scores @ v 8*8*4, k^T w
    # 4*8*4, k^T u, w @ S and q @ S 8*4*4 each, the state's passage 4*4*4; 4 heads, 2 FLOPs
    # per multiply-add, per token.
    mixer = 2 * 4 * chunks * (64 * 12 + 8 * 16 + 3 * 8 * 16 + 16 * 4) / seq_len
    layers = result["per_layer"]
    assert [layer["mixer"] for layer in layers] == [mixer, 0] * 2
    assert layers[1]["attention_full"] == 2 * seq_len * 4 * (4 + 4)
    assert result["forward_per_token"]["mixer"] == 2 * mixer
    measured = result["measured"]["per_token"]["forward"]
    assert measured == pytest.approx(result["forward_per_token"]["total"], rel=1e-12)


def test_params_and_gradflow_see_the_mixers_as_attention(write_spec):
    spec = hybrid(write_spec)
    params = run(spec, "params")
    assert [b["attention"] for b in params["per_block"]] == [DELTANET_PARAMS, GATED_GQA_PARAMS] * 2
    grads = run(spec, "gradflow")["per_block"]
    assert all(block["attention"] > 0 for block in grads)


def test_the_compact_model_stands_for_the_stack(write_spec):
    """12 layers alternating: the compact model builds a few blocks (each distinct pair of
    neighbours, and the last) and its shape-only figures are the full model's."""
    spec = hybrid(write_spec, n_layers=12, flops={"seq_len": 20}, memory={"seq_len": 20})
    compact = explorer.build_model(spec, device="meta", compact=True)
    assert len(compact.trf_blocks) < 12
    full_spec = hybrid(write_spec, n_layers=12, flops={"seq_len": 20})
    flops = run(spec, "flops")
    assert flops["forward_per_token"]["mixer"] == 6 * 2 * 4 * 3 * (64 * 12 + 8 * 16 + 3 * 8 * 16 + 16 * 4) / 20
    assert flops["measured"]["per_token"]["forward"] == pytest.approx(
        flops["forward_per_token"]["total"], rel=1e-12)
    full = explorer.build_model(full_spec, device="meta")
    from explorer.measure.costs import closed_form
    assert closed_form(full, full_spec.model, 20)["forward_per_token"] == flops["forward_per_token"]
    kv = run(spec, "memory")["kv_cache"]
    assert kv["state_bytes_per_sequence"]["fp32"] == 6 * 4 * STATE_VALUES
