"""Mixture of experts: a router sends each token to its top-k of n gated FFNs (imported only when
building).

Switch Transformer (Fedus et al. 2021), Mixtral (Jiang et al. 2024), DeepSeekMoE (Dai et al.
2024) and Qwen-MoE: each expert is the spec's gated FFN (the ``glu`` layer with the spec's
activation, so SwiGLU with silu); ``n_shared`` always-on experts see every token, as in
DeepSeek-V2/V3 and Qwen2-MoE (whose one shared expert has its own size and a sigmoid gate).
Tokens are routed per expert: each expert runs once on exactly the tokens that chose it
(``index_select``) and its outputs are added back in place (``index_add_``), so a forward costs
the active experts only, never every expert on every token.

The contracts of explorer.model.contracts point 6: ``explorer_aux_loss()`` (the load-balancing and
router z-losses of the last forward, times their coefficients), ``explorer_stats()`` (the
per-expert load) and ``active_parameters()`` (router + shared + top_k experts).
"""

import torch
from torch import nn

from .mlp import GLU


class MixtureOfExperts(nn.Module):
    """``router`` (a bias-free Linear emb_dim -> n_experts), ``experts`` (n_experts GLUs of
    ``hidden`` units) and, with ``n_shared`` > 0, ``shared``: one GLU of n_shared * hidden units
    (``shared_hidden`` in place of hidden when set), which computes exactly the sum of n_shared
    experts of that size (their hidden units side by side), DeepSeek's own layout. With
    ``shared_gate``, ``shared_gate`` (a bias-free Linear emb_dim -> 1) scales the shared output
    per token by its sigmoid: Qwen2-MoE's shared_expert_gate.

    The router's weights per token (``router``):

    - ``softmax_topk``: softmax over all experts, then the top-k probabilities as they are
      (Switch, DeepSeek-V2, Qwen2-MoE without norm_topk_prob); they sum to less than 1.
    - ``softmax_topk_renorm``: the same top-k probabilities divided by their sum (Hugging Face's
      Mixtral, Qwen2/3-MoE with norm_topk_prob).
    - ``topk_softmax``: softmax over the top-k logits only (Mistral's reference Mixtral). This
      equals ``softmax_topk_renorm`` exactly: exp(l_i) / Z renormalised over the top k is
      exp(l_i) / sum_topk exp(l_j), and softmax keeps the order, so both pick the same experts.
    - ``sigmoid_topk`` / ``sigmoid_topk_renorm``: each expert's score is sigmoid(logit), on its
      own (DeepSeek-V3: renormalised).

    With ``n_groups`` > 1 a token first keeps its ``topk_groups`` best groups of experts
    (ranked by their best score, or the sum of their two best: ``group_score``), then takes its
    top k among those (DeepSeek's group-limited routing). ``score_bias`` adds a per-expert bias
    (the buffer ``score_bias``, DeepSeek-V3's e_score_correction_bias) to the scores that rank
    the experts and groups, but not to the weights. The weights are then multiplied by
    ``routed_scaling`` (DeepSeek's routed_scaling_factor: V2 16.0, V3 2.5, V2-Lite 1.0).
    """

    def __init__(self, ctx, n_experts, top_k, n_shared, shared_hidden, shared_gate, hidden,
                 multiple_of, router, n_groups, topk_groups, group_score, score_bias,
                 routed_scaling, aux_loss_coef, z_loss_coef, bias):
        super().__init__()
        d = ctx.config.emb_dim
        self.n_experts, self.top_k, self.n_shared = n_experts, top_k, n_shared
        self.routing = router
        self.n_groups, self.topk_groups, self.group_score = n_groups, topk_groups, group_score
        self.routed_scaling = routed_scaling
        self.aux_loss_coef, self.z_loss_coef = aux_loss_coef, z_loss_coef
        # Created in DeepSeek's order (experts, router, shared), then Qwen2-MoE's shared gate.
        self.experts = nn.ModuleList(
            GLU(ctx, hidden=hidden, multiple_of=multiple_of, bias=bias) for _ in range(n_experts))
        self.hidden = self.experts[0].proj.in_features  # hidden, or Llama's rule for 0
        self.router = nn.Linear(d, n_experts, bias=False)
        self.shared = (GLU(ctx, hidden=n_shared * (shared_hidden or self.hidden),
                           multiple_of=multiple_of, bias=bias) if n_shared else None)
        self.shared_gate = nn.Linear(d, 1, bias=False) if shared_gate else None
        if score_bias:  # saved with the weights; not a parameter: no gradient moves it
            self.register_buffer("score_bias", torch.zeros(n_experts))
        else:
            self.score_bias = None
        self._last = None  # what the last forward measured, for the aux loss and the stats

    def forward(self, x):
        b, t, d = x.shape
        tokens = x.reshape(b * t, d)  # (N, C)
        logits = self.router(tokens)  # (N, E)
        probs, weights, chosen = self.route(logits)  # (N, E), (N, k), (N, k)
        out = self._dispatch(tokens, weights.to(x.dtype), chosen)  # (N, C)
        if self.shared is not None:
            shared = self.shared(tokens)  # (N, C)
            if self.shared_gate is not None:
                shared = torch.sigmoid(self.shared_gate(tokens)) * shared  # (N, 1) * (N, C)
            out = out + shared
        self._last = _Routing(logits, probs, chosen, self.n_experts)
        return out.view(b, t, d)

    def route(self, logits):
        """Router probabilities over all experts (N, E), and each token's top-k expert weights
        (N, k) and indices (N, k); in float32 at least, as Mixtral and DeepSeek route.

        The probabilities (what the load-balancing loss reads) are the softmax, or with a
        sigmoid router the scores normalised to sum 1 per token (DeepSeek-V3's affinities).
        """
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if self.routing == "topk_softmax":
            top_logits, chosen = logits.topk(self.top_k, dim=-1)  # (N, k)
            weights = torch.softmax(top_logits, dim=-1)
            return torch.softmax(logits, dim=-1), self._scaled(weights), chosen
        sigmoid = self.routing.startswith("sigmoid")
        scores = logits.sigmoid() if sigmoid else torch.softmax(logits, dim=-1)  # (N, E)
        ranked = scores if self.score_bias is None else scores + self.score_bias
        if self.n_groups > 1:
            ranked = self._best_groups_only(ranked)
        chosen = ranked.topk(self.top_k, dim=-1).indices  # (N, k)
        weights = scores.gather(-1, chosen)  # (N, k), without the bias
        if self.routing.endswith("_renorm"):
            # DeepSeek-V3 adds 1e-20 so that k scores of 0 (sigmoid far below) stay finite.
            weights = weights / (weights.sum(dim=-1, keepdim=True) + (1e-20 if sigmoid else 0))
        probs = scores / scores.sum(dim=-1, keepdim=True) if sigmoid else scores
        return probs, self._scaled(weights), chosen

    def _best_groups_only(self, ranked):
        """``ranked`` (N, E) with the experts outside each token's topk_groups best groups at
        -inf: DeepSeek's group-limited routing."""
        n = ranked.shape[0]
        groups = ranked.view(n, self.n_groups, -1)  # (N, G, E/G)
        if self.group_score == "max":
            group_scores = groups.max(dim=-1).values  # (N, G)
        else:
            group_scores = groups.topk(2, dim=-1).values.sum(dim=-1)
        keep = group_scores.topk(self.topk_groups, dim=-1).indices  # (N, topk_groups)
        mask = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, keep, True)
        return groups.masked_fill(~mask[..., None], -torch.inf).view(n, -1)  # (N, E)

    def _scaled(self, weights):
        return weights * self.routed_scaling if self.routed_scaling != 1.0 else weights

    def _dispatch(self, tokens, weights, chosen):
        """sum_j weights[n, j] * expert_{chosen[n, j]}(tokens[n]) for every token n: (N, C)."""
        n, k = chosen.shape
        flat = chosen.flatten()  # (N*k,) the expert of each (token, slot) assignment
        order = flat.argsort(stable=True)  # the assignments grouped by expert
        rows = order // k  # (N*k,) the token of each grouped assignment
        scales = weights.flatten()[order]  # (N*k,)
        out = torch.zeros_like(tokens)
        if _shapes_only(flat):
            # No routing to read (meta, or FakeTensorMode as the memory analysis uses): every
            # assignment goes through one expert standing in for all of them (they have the same
            # shapes). That costs the FLOPs and saves the activations of top_k experts per token,
            # as a balanced routing would, in one pass instead of n_experts: DeepSeek-V3's 58
            # MoE layers of 256 experts are costed in seconds, not minutes.
            return out.index_add_(0, rows, self.experts[0](tokens.index_select(0, rows))
                                  * scales[:, None])
        counts = torch.bincount(flat, minlength=self.n_experts).tolist()
        for expert, idx, w in zip(self.experts, rows.split(counts), scales.split(counts)):
            if idx.numel():
                out.index_add_(0, idx, expert(tokens.index_select(0, idx)) * w[:, None])
        return out

    def __getstate__(self):
        # The last forward's tensors belong to its autograd graph, which cannot be copied: a
        # copy (copy.deepcopy(model), as gradflow makes) or a pickle has not run a forward yet.
        return {**self.__dict__, "_last": None}

    # -- the contracts for analyses and training (explorer.model.contracts, point 6) -----------------

    def explorer_aux_loss(self):
        """aux_loss_coef * load-balancing loss + z_loss_coef * router z-loss, of the last forward
        (a scalar tensor with its graph), or None before any forward or with both coefs 0."""
        if self._last is None or not (self.aux_loss_coef or self.z_loss_coef):
            return None
        return (self.aux_loss_coef * self._last.load_balancing_loss()
                + self.z_loss_coef * self._last.z_loss())

    def explorer_stats(self):
        """The last forward's routing as plain numbers: each expert's share of the assignments
        (``expert_load``, sums to 1), the load-balancing loss and the router z-loss."""
        if self._last is None or _shapes_only(self._last.logits):
            return {}
        return {
            "expert_load": (self._last.counts() / self._last.chosen.numel()).tolist(),
            "load_balancing_loss": self._last.load_balancing_loss().item(),
            "router_z_loss": self._last.z_loss().item(),
        }

    def active_parameters(self, matrices_only=False):
        """Parameters one token uses: the router, the shared experts (and their gate) and top_k
        routed experts (``matrices_only``: their weight matrices, without biases)."""
        def count(module):
            if module is None:
                return 0
            return sum(p.numel() for p in module.parameters() if p.dim() >= 2 or not matrices_only)
        return (count(self.router) + count(self.shared) + count(self.shared_gate)
                + self.top_k * count(self.experts[0]))


class _Routing:
    """One forward's router logits (N, E), probabilities (N, E) and choices (N, k)."""

    def __init__(self, logits, probs, chosen, n_experts):
        self.logits, self.probs, self.chosen, self.n_experts = logits, probs, chosen, n_experts

    def counts(self):
        """(E,) how many tokens chose each expert among their top k (sums to N * k)."""
        ones = torch.ones(self.chosen.numel(), dtype=self.probs.dtype, device=self.probs.device)
        return self.probs.new_zeros(self.n_experts).scatter_add_(0, self.chosen.flatten(), ones)

    def load_balancing_loss(self):
        """Switch Transformer's n_experts * sum_i f_i * P_i, in Mixtral's form (Hugging Face's
        load_balancing_loss_func): f_i is the fraction of tokens that have expert i among their
        top k (the f_i sum to top_k), P_i the mean router probability of expert i. Only P_i
        carries gradient. Uniform routing gives top_k."""
        f = self.counts() / self.chosen.shape[0]  # (E,)
        return self.n_experts * (f * self.probs.mean(dim=0)).sum()

    def z_loss(self):
        """ST-MoE's router z-loss (Zoph et al. 2022): the mean over tokens of
        logsumexp(router logits)^2, which keeps the logits small."""
        logits = self.logits.to(self.probs.dtype)
        return torch.logsumexp(logits, dim=-1).pow(2).mean()


def _shapes_only(tensor):
    """True for tensors without data: the meta device, or FakeTensorMode's fake tensors."""
    if tensor.is_meta:
        return True
    # FakeTensorMode ships with torch (the memory analysis uses it) but lives in a private module.
    from torch._subclasses.fake_tensor import is_fake

    return is_fake(tensor)

