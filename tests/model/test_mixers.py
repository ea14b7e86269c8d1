"""Linear-time token mixers (linear_attention, gated_deltanet) and gated attention: the chunked
form (training) equals the token-by-token recurrence (generation) to 1e-5 in fp32, the gated
delta rule equals transformers' torch reference, a model decodes with a recurrent state exactly
as it computes in one forward, greedy generation gives the same tokens with and without the
state, and a hybrid spec trains."""

import pytest
import torch
from torch.nn import functional as F

import explorer
from explorer.model.kv_cache import ModelCache, RecurrentState
from explorer.plugins.attention.deltanet import chunked_delta_rule, recurrent_delta_rule
from explorer.plugins.attention.linear import retnet_log_decay
from explorer.plugins.attention.recurrence import causal_conv, chunked_linear, recurrent_linear
from tests.helpers import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

MIXERS = {
    "linear": {"name": "linear_attention"},
    "linear_retnet": {"name": "linear_attention", "decay": True, "feature_map": "identity",
                      "normalise": False, "chunk_size": 5},
    "deltanet": {"name": "gated_deltanet", "chunk_size": 4},
    "deltanet_grouped": {"name": "gated_deltanet", "n_key_heads": 2, "key_head_dim": 6,
                         "value_head_dim": 3, "chunk_size": 5},
}


def random(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- the two forms of each recurrence ------------------------------------------------------------

@pytest.mark.parametrize("decay", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 4, 7, 64])
def test_chunked_linear_recurrence_equals_token_by_token(decay, chunk_size):
    q, k, v = random(2, 3, 19, 5, seed=0), random(2, 3, 19, 5, seed=1), random(2, 3, 19, 6, seed=2)
    g = retnet_log_decay(3)[None, :, None].expand(2, 3, 19) if decay else None
    start = random(2, 3, 5, 6, seed=3)
    chunked, state = chunked_linear(q, k, v, g, start, chunk_size)
    stepped, stepped_state = recurrent_linear(q, k, v, g, start)
    torch.testing.assert_close(chunked, stepped, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state, stepped_state, atol=1e-5, rtol=1e-5)


def test_causal_conv_equals_conv1d_with_its_gradients_and_carries_its_state():
    """The shifted multiply-adds against torch's depthwise conv1d over left-padded inputs, their
    gradients by finite differences (float64), and a sequence cut in two (3 and 6 tokens, the
    first shorter than the kernel) giving the same outputs and the last K - 1 inputs as state."""
    x = random(2, 9, 5, seed=0).double().requires_grad_()
    weight = random(5, 1, 4, seed=1).double().requires_grad_()
    out, state = causal_conv(x, weight, None)
    reference = F.conv1d(F.pad(x.transpose(1, 2), (3, 0)), weight, groups=5).transpose(1, 2)
    torch.testing.assert_close(out, reference, atol=1e-12, rtol=0)
    torch.testing.assert_close(state, x[:, -3:], atol=0, rtol=0)
    assert torch.autograd.gradcheck(lambda a, w: causal_conv(a, w, None)[0], (x, weight))
    before = random(2, 3, 5, seed=2).double()
    assert torch.autograd.gradcheck(lambda a, w: causal_conv(a, w, before)[0], (x, weight))
    first, carried = causal_conv(x[:, :3], weight, None)
    torch.testing.assert_close(carried, x[:, :3], atol=0, rtol=0)
    second, state = causal_conv(x[:, 3:], weight, carried)
    torch.testing.assert_close(torch.cat((first, second), dim=1), reference, atol=1e-12, rtol=0)
    torch.testing.assert_close(state, x[:, -3:], atol=0, rtol=0)


def test_retnet_decays_by_hand():
    """RetNet: gamma_h = 1 - 2^(-5 - h): 31/32, 63/64, 127/128."""
    torch.testing.assert_close(retnet_log_decay(3).exp(), torch.tensor([31 / 32, 63 / 64, 127 / 128]))


def delta_inputs(b=2, h=3, t=19, dk=4, dv=5, decay_rate=1.0):
    q = F.normalize(random(b, h, t, dk, seed=0), dim=-1) * dk ** -0.5
    k = F.normalize(random(b, h, t, dk, seed=1), dim=-1)
    v = random(b, h, t, dv, seed=2)
    g = -decay_rate * F.softplus(random(b, h, t, seed=3))  # log-decays <= 0
    beta = torch.sigmoid(random(b, h, t, seed=4))
    return q, k, v, g, beta


@pytest.mark.parametrize("decay_rate", [1.0, 16.0])
@pytest.mark.parametrize("chunk_size", [1, 4, 7, 64])
def test_chunked_delta_rule_equals_token_by_token(chunk_size, decay_rate):
    """decay_rate 16 (Qwen3-Next's largest A at initialisation): log-decays of a chunk reach far
    below NEGLIGIBLE_LOG_DECAY, which the chunked form takes as 0 and the stepped form keeps."""
    q, k, v, g, beta = delta_inputs(decay_rate=decay_rate)
    start = random(2, 3, 4, 5, seed=5)
    chunked, state = chunked_delta_rule(q, k, v, g, beta, start, chunk_size)
    stepped, stepped_state = recurrent_delta_rule(q, k, v, g, beta, start)
    torch.testing.assert_close(chunked, stepped, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state, stepped_state, atol=1e-5, rtol=1e-5)


def test_delta_rule_equals_transformers_torch_reference():
    """transformers' Qwen3-Next torch paths (no fla kernels installed), (B, T, H, d) layout."""
    from transformers.models.qwen3_next import modeling_qwen3_next as hf

    q, k, v, g, beta = delta_inputs(t=21)
    start = random(2, 3, 4, 5, seed=5)
    ours, state = chunked_delta_rule(q, k, v, g, beta, start, 8)
    raw_q = q / q.shape[-1] ** -0.5  # transformers scales queries itself
    bthd = [z.transpose(1, 2) for z in (raw_q, k, v)]
    theirs, their_state = hf.torch_chunk_gated_delta_rule(
        *bthd, g=g.transpose(1, 2), beta=beta.transpose(1, 2), chunk_size=8,
        initial_state=start, output_final_state=True)
    torch.testing.assert_close(ours, theirs.transpose(1, 2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state, their_state, atol=1e-5, rtol=1e-5)
    stepped, _ = hf.torch_recurrent_gated_delta_rule(
        *bthd, g=g.transpose(1, 2), beta=beta.transpose(1, 2), initial_state=start,
        output_final_state=True)
    torch.testing.assert_close(ours, stepped.transpose(1, 2), atol=1e-5, rtol=1e-5)


# -- in a model: the state carries generation ----------------------------------------------------

def mixer_spec(make_spec, attention, **model):
    return make_spec(model=model, attention=attention, norm="rmsnorm", ffn="glu",
                     activation="silu", positional="rope")


def tokens(b, t, seed=0):
    return torch.randint(0, 256, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(MIXERS))
def test_prompt_then_tokens_equals_one_forward(make_spec, name):
    """Logits of a 7-token prompt then 13 single tokens (the recurrence), and of 3 chunks of
    odd sizes, carried by the RecurrentState, equal one chunked forward over all 20."""
    model = explorer.build_model(mixer_spec(make_spec, MIXERS[name])).eval()
    x = tokens(2, 20)
    with torch.no_grad():
        full = model(x)
        for sizes in ([7] + [1] * 13, [6, 9, 5]):
            cache = ModelCache.for_model(model, 20)
            assert all(isinstance(layer, RecurrentState) for layer in cache.layers)
            parts, start = [], 0
            for size in sizes:
                parts.append(model(x[:, start:start + size], cache=cache))
                start += size
            torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(MIXERS))
def test_cached_and_uncached_greedy_generation_give_the_same_tokens(make_spec, name):
    model = explorer.build_model(mixer_spec(make_spec, MIXERS[name])).eval()
    prompt = tokens(2, 5, seed=1)
    cached = explorer.generate(model, prompt, 20, use_cache=True)
    uncached = explorer.generate(model, prompt, 20, use_cache=False)
    assert cached.shape == (2, 25)
    assert torch.equal(cached, uncached)


def test_state_size_is_what_the_mixer_declares(make_spec):
    """gated_deltanet, width 16, 4 value heads of 4 (keys 2 heads of 6, values 3): the conv
    keeps 3 inputs of 2*2*6 + 4*3 = 36 channels, the state 4 matrices of 6 x 3: 108 + 72."""
    model = explorer.build_model(mixer_spec(make_spec, MIXERS["deltanet_grouped"])).eval()
    mixer = model.trf_blocks[0].att
    assert mixer.state_values_per_sequence == 36 * 3 + 4 * 6 * 3 == 180
    cache = ModelCache.for_model(model, 20)
    with torch.no_grad():
        model(tokens(1, 9), cache=cache)
    held = cache[0].tensors
    assert held["conv"].shape == (1, 3, 36) and held["matrix"].shape == (1, 4, 6, 3)
    assert sum(t[0].numel() for t in held.values()) == mixer.state_values_per_sequence
    linear = explorer.build_model(mixer_spec(make_spec, MIXERS["linear"])).trf_blocks[0].att
    assert linear.state_values_per_sequence == 4 * 4 * (4 + 1)  # values and the normaliser
    assert (linear.n_kv_heads, linear.window, linear.kv_values_per_token) == (0, 0, 0)


# -- gated attention ------------------------------------------------------------------------------

@pytest.mark.parametrize("attention", ["mha", "gqa"])
def test_output_gate_multiplies_each_head_by_a_sigmoid(make_spec, attention):
    """The gate's projection is built after the others, so the seed gives both models the same
    other weights; with the gate's weights at 0 every head is multiplied by sigmoid(0) = 1/2."""
    plain = {"name": attention, "out_bias": False}
    gated = explorer.build_model(make_spec(attention={**plain, "output_gate": True})).eval()
    ungated = explorer.build_model(make_spec(attention=plain)).eval()
    att, ref = gated.trf_blocks[0].att, ungated.trf_blocks[0].att
    assert att.W_gate.weight.shape == (16, 16)
    x = random(2, 6, 16, seed=0)
    positions = torch.arange(6)
    with torch.no_grad():
        att.W_gate.weight.zero_()
        torch.testing.assert_close(att(x, gated.pos_emb, positions),
                                   0.5 * ref(x, ungated.pos_emb, positions))
        att.W_gate.weight.copy_(random(16, 16, seed=1))
        gate = torch.sigmoid(x @ att.W_gate.weight.T)  # (B, T, nh*hs)
        context = ref.out_proj.weight.pinverse()  # recover each head's output from ref
        expected = (ref(x, ungated.pos_emb, positions) @ context.T * gate) @ ref.out_proj.weight.T
        torch.testing.assert_close(att(x, gated.pos_emb, positions), expected, atol=1e-5, rtol=1e-4)


# -- a hybrid spec builds and trains; bad values are refused -------------------------------------

def test_a_hybrid_spec_trains(make_spec, write_spec):
    """Layers 0 and 2 gated DeltaNet, 1 and 3 gated softmax attention with RoPE: 20 AdamW steps
    on one batch drive the loss down, and every mixer weight gets a gradient."""
    spec = explorer.load_spec(write_spec({
        "name": "hybrid", "seed": 123, "tokenizer": "bytes",
        "model": {"vocab_size": 256, "context_length": 32, "emb_dim": 16, "n_heads": 4,
                  "n_layers": 4, "qkv_bias": False, "drop_rate": 0.0},
        "components": {"attention": {"name": "gqa", "n_kv_heads": 2, "output_gate": True},
                       "positional": "rope", "norm": "rmsnorm", "ffn": "glu", "activation": "silu"},
        "layers": [{"every": 2, "offset": 0,
                    "components": {"attention": {"name": "gated_deltanet", "chunk_size": 8}}}]}))
    model = explorer.build_model(spec).train()
    assert [type(b.att).__name__ for b in model.trf_blocks] == [
        "GatedDeltaNet", "GroupedQueryAttention"] * 2
    x = tokens(4, 25)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        optimiser.zero_grad()
        loss.backward()
        losses.append(loss.item())
        optimiser.step()
    assert losses[0] == pytest.approx(5.545, abs=0.5)  # about ln 256 at the start
    assert losses[-1] < 0.6 * losses[0]
    grads = {n: p.grad for n, p in model.trf_blocks[0].att.named_parameters()}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), grads.keys()


@pytest.mark.parametrize("attention, message", [
    ({"name": "linear_attention", "feature_map": "identity"},
     "components.attention.normalise: the identity feature map can make the normaliser zero or "
     "negative; normalise false, or feature_map elu"),
    ({"name": "gated_deltanet", "n_key_heads": 3},
     "components.attention.n_key_heads: 3 key heads cannot be shared by 4 value heads; "
     "a divisor of 4: 1, 2, 4"),
])
def test_bad_mixer_params_are_one_line(capsys, write_spec, attention, message):
    path = write_spec({"name": "bad", "tokenizer": "bytes",
                       "model": {"vocab_size": 256, "context_length": 32, "emb_dim": 16,
                                 "n_heads": 4, "n_layers": 2},
                       "components": {"attention": attention}})
    code, out, err = run_cli(capsys, "build", path, "--only", "params")
    assert (code, out) == (2, "")
    assert err == f"Error: {path}: {message}\n"
