"""The bidirectional (BERT-style, post-LayerNorm) MaskGIT transformer (spec §2, fixture README §5.2).

Input: ids (B, L) with L ≤ 1 + latent_size², the class token (``label + codebook_size``) at
position 0 and image tokens after it in raster order. The mask token may be written as -1 (the
official spelling) or as ``vocab_size - 1``. Output: logits over the full vocabulary.

Context reuse (ReCAP, Liu et al. 2025) is a capability on the side of the official function: a
*full evaluation* given a ``ContextCache`` (``context_cache()``) keeps every layer's keys and values
while computing the usual logits; a *cheap evaluation* (``positions`` given too) computes only the
rows at ``positions`` and attends to the cached keys and values everywhere else, with the fresh
ones written in at ``positions``. Without a cache every call is the official computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maskgit.configs import TransformerConfig
from maskgit.models.pretrained import PretrainedMixin, embedding

__all__ = ["MaskGITTransformer", "TransformerLayer", "SelfAttention", "ContextCache", "AttentionCache"]

# Official BERT-style LayerNorm epsilon (torch's default is 1e-5).
LAYER_NORM_EPS = 1e-12


def _layer_norm(size: int) -> nn.LayerNorm:
    return nn.LayerNorm(size, eps=LAYER_NORM_EPS)


def _gelu() -> nn.GELU:
    # jax.nn.gelu defaults to the tanh approximation; exact erf GELU drifts by ~2e-3 in the logits.
    return nn.GELU(approximate="tanh")


class AttentionCache:
    """One attention layer's part of a ``ContextCache``: the keys and values of every position of
    the sequence, (B, L, heads, head_dim) each, in the model's dtype, as the last full evaluation
    computed them and the cheap ones since have rewritten them at their positions."""

    def __init__(self) -> None:
        self.key: torch.Tensor | None = None
        self.value: torch.Tensor | None = None

    def update(
        self, key: torch.Tensor, value: torch.Tensor, positions: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Take a layer's fresh keys and values, (B, heads, M, head_dim), and return the ones to
        attend to, (B, heads, L, head_dim).

        ``positions`` None (a full evaluation, M = L): keep them and return them unchanged.
        ``positions`` (B, M) int64 (a cheap evaluation): write them into the cached ones at those
        positions (in place: the cache holds the newest value of every position) and return the
        whole cache. A position listed twice in a row must carry the same value both times.
        """
        if positions is None:
            # (B, L, heads, head_dim) is the projections' own layout: no copy on the plain path; on
            # the fused path it copies the keys and values out of the stacked query-key-value output,
            # so the cache does not keep the queries alive.
            self.key, self.value = key.transpose(1, 2).contiguous(), value.transpose(1, 2).contiguous()
            return key, value
        if self.key is None or self.value is None:
            raise ValueError("a cheap evaluation (positions given) needs a full evaluation into the cache first")
        rows = torch.arange(positions.shape[0], device=positions.device)[:, None]
        self.key.index_put_((rows, positions), key.transpose(1, 2))
        self.value.index_put_((rows, positions), value.transpose(1, 2))
        return self.key.transpose(1, 2), self.value.transpose(1, 2)


class ContextCache:
    """What a cheap evaluation reuses: an ``AttentionCache`` per layer, filled by a full evaluation
    (``MaskGITTransformer.codebook_logits(ids, cache=cache)``). It belongs to one batch of
    sequences: its rows are the rows of the ids it was filled with."""

    def __init__(self, num_layers: int) -> None:
        self.layers = tuple(AttentionCache() for _ in range(num_layers))


class SelfAttention(nn.Module):
    """Multi-head self-attention with no mask (the official mask is all ones)."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)

    def forward(
        self, x: torch.Tensor, cache: AttentionCache | None = None, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, M, hidden) → (B, M, hidden). Without ``cache`` (M = L) the official attention;
        with it, keys and values go through ``cache.update(k, v, positions)`` (context reuse)."""
        batch, length, hidden = x.shape
        shape = (batch, length, self.num_heads, hidden // self.num_heads)
        # (B, heads, L, head_dim); the row split head * head_dim + d is flax's (heads, head_dim).
        q, k, v = (proj(x).view(shape).transpose(1, 2) for proj in (self.query, self.key, self.value))
        if cache is not None:
            k, v = cache.update(k, v, positions)
        if self.training and x.device.type == "cpu" and torch.is_grad_enabled():
            # Written out for CPU training: the fused CPU attention's backward is several times
            # slower than these three ops at the sequence lengths of these models.
            scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
            probs = F.dropout(scores.softmax(dim=-1), p=self.dropout)
            attended = probs.to(v.dtype) @ v
        else:
            attended = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(attended.transpose(1, 2).reshape(batch, length, hidden))


class TransformerLayer(nn.Module):
    """Post-LN layer: x = LN(x + drop(attn(x))); x = LN(x + drop(mlp(x)))."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.attention = SelfAttention(hidden, config.num_heads, config.dropout)
        self.attention_norm = _layer_norm(hidden)
        self.mlp_intermediate = nn.Linear(hidden, config.intermediate_size)
        self.mlp_activation = _gelu()
        self.mlp_output = nn.Linear(config.intermediate_size, hidden)
        self.mlp_norm = _layer_norm(hidden)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, cache: AttentionCache | None = None, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, M, hidden) → (B, M, hidden); ``cache`` and ``positions`` as ``SelfAttention``'s."""
        x = self.attention_norm(x + self.dropout(self.attention(x, cache, positions)))
        h = self.mlp_output(self.mlp_activation(self.mlp_intermediate(x)))
        return self.mlp_norm(x + self.dropout(h))


class MaskGITTransformer(PretrainedMixin, nn.Module):
    """ids (B, L) int → logits (B, L, vocab_size) float.

    The output head is tied to the word embeddings and has its own bias over the full vocabulary
    (``mlm_bias``). Decoding uses only ``logits[..., :codebook_size]``.
    """

    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or TransformerConfig()
        hidden = config.hidden_size
        self.word_embeddings = embedding(config.vocab_size, hidden)
        self.position_embeddings = embedding(config.max_position_embeddings, hidden)
        self.embedding_norm = _layer_norm(hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_layers))
        self.mlm_dense = nn.Linear(hidden, hidden)
        self.mlm_activation = _gelu()
        self.mlm_norm = _layer_norm(hidden)
        self.mlm_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official BERT initialisers: truncated normal (±2σ, σ = 0.02) for kernels and
        embeddings, zero biases, unit LayerNorm scales."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
                if isinstance(module, nn.Linear):
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        self.mlm_bias.zero_()

    def _check_shape(self, ids: torch.Tensor) -> None:
        if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.is_complex():
            raise TypeError("ids must be an integer torch.Tensor")
        if ids.dim() != 2:
            raise ValueError(f"ids must be (B, L), got shape {tuple(ids.shape)}")
        limit = self.config.max_position_embeddings
        if not 0 < ids.shape[1] <= limit:
            raise ValueError(f"sequence length must be in [1, {limit}], got {ids.shape[1]}")

    def check_ids(self, ids: torch.Tensor) -> None:
        """Raise ValueError unless ids (B, L) are integers in [-1, vocab_size) with a valid length.

        This reads the values, so it syncs with the host on an accelerator: callers check once at
        their boundary (the samplers do), and ``forward`` checks only the shape.
        """
        self._check_shape(ids)
        low, high = int(ids.min()), int(ids.max())
        if low < -1 or high >= self.config.vocab_size:
            raise ValueError(
                f"ids must be in [-1, {self.config.vocab_size}) (-1 and {self.config.mask_token_id} "
                f"are the mask), got values in [{low}, {high}]"
            )

    def context_cache(self) -> ContextCache:
        """An empty ``ContextCache`` for this model's layers, for ``forward`` / ``codebook_logits``."""
        return ContextCache(len(self.layers))

    def _check_reuse(self, ids: torch.Tensor, cache: ContextCache | None, positions: torch.Tensor | None) -> None:
        if cache is None:
            if positions is not None:
                raise ValueError("positions (a cheap evaluation) need the cache of a full evaluation")
            return
        if not isinstance(cache, ContextCache) or len(cache.layers) != len(self.layers):
            raise ValueError(f"cache must be this model's context_cache() ({len(self.layers)} layers)")
        if positions is not None and (
            not isinstance(positions, torch.Tensor) or positions.dtype != torch.int64 or positions.dim() != 2
            or positions.shape[0] != ids.shape[0] or positions.shape[1] < 1
        ):
            raise ValueError(f"positions must be an int64 (B, M) tensor with B = {ids.shape[0]} and M >= 1, "
                             f"got {getattr(positions, 'dtype', type(positions).__name__)} "
                             f"{tuple(getattr(positions, 'shape', ()))}")

    def _hidden(
        self, ids: torch.Tensor, cache: ContextCache | None = None, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ids (B, L) → the head's input (B, L, hidden), or (B, M, hidden) at ``positions``, in the
        weights' dtype."""
        self._check_shape(ids)
        self._check_reuse(ids, cache, positions)
        # JAX's take wraps -1 to the last row; nn.Embedding would raise on it.
        ids = torch.where(ids < 0, self.config.mask_token_id, ids).long()
        if positions is None:
            position_rows = self.position_embeddings.weight[: ids.shape[1]]
        else:
            ids, position_rows = ids.gather(1, positions), self.position_embeddings.weight[positions]
        x = self.dropout(self.embedding_norm(self.word_embeddings(ids) + position_rows))
        if cache is None:
            for layer in self.layers:
                x = layer(x)
        else:
            for layer, layer_cache in zip(self.layers, cache.layers):
                x = layer(x, layer_cache, positions)
        return self.mlm_norm(self.mlm_activation(self.mlm_dense(x)))

    def forward(
        self, ids: torch.Tensor, *, cache: ContextCache | None = None, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ids (B, L) int in [-1, vocab_size) (see ``check_ids``) → logits (B, L, vocab_size).

        Context reuse (see the module docstring): with ``cache`` (``context_cache()``) alone, a
        full evaluation that fills the cache, with the same logits. With ``positions`` too, (B, M)
        int64 in [0, L), a cheap evaluation: logits (B, M, vocab_size) of the rows at
        ``positions``, computed from ``ids`` there and from the cache's keys and values (rewritten
        at ``positions``) everywhere else. On an unchanged ``ids`` it gives the full evaluation's
        rows at ``positions``, to within rounding.
        """
        return F.linear(self._hidden(ids, cache, positions), self.word_embeddings.weight, self.mlm_bias)

    def codebook_logits(
        self, ids: torch.Tensor, *, cache: ContextCache | None = None, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits over the image tokens only, (B, L, codebook_size) (or (B, M, codebook_size) at
        ``positions``): what decoding reads. The same values as ``forward(ids, ...)[..., :codebook_size]``,
        without computing the class and mask rows; ``cache`` and ``positions`` as for ``forward``."""
        size = self.config.codebook_size
        return F.linear(self._hidden(ids, cache, positions), self.word_embeddings.weight[:size], self.mlm_bias[:size])
