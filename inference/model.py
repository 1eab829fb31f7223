"""The attention model: each candidate ad attends over the user's recent behaviour.

Target attention in the DIN / BST family, with scaled dot products (cheap enough
for hundreds of candidates inside a sub-millisecond budget, where DIN's MLP
attention is not). For one impression:

    ad        = item(ad) + kind(ad) + duration(ad)                    # [B, C, D]
    keys/vals = item(history) (+ a learned null slot, always valid)   # [B, L+1, D]
    pooled    = MultiHead(query=ad, keys, vals, mask=history > 0)     # [B, C, D]
    context   = placement + pos + device + hour                       # [B, D]
    h         = MLP([ad, pooled, ad * pooled, exposures], context)    # [B, C, hidden]
    heads     → logit P(view), logit P(click | view), mu of log(seconds | view)

An item's vector is its id embedding plus its catalogue category's, so the
model generalises across items it has seen rarely. The null slot gives an empty
history something to attend to (no NaN softmax).
`exposures` counts the candidate in the history: recent exposures cause fatigue.
Expected attentive seconds = P(view) · E[S | view] for S log-normal(mu, sigma),
capped at 180 s; P(click) = P(view) · P(click | view).

Ids are int32 throughout (TensorRT-friendly); 0 is padding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

MAX_ATTENTIVE_SECONDS = 180.0
FORWARD_INPUTS = ("ads", "ad_kind", "ad_duration", "history", "context")  # AttentionModel's


@dataclass(frozen=True)
class ModelConfig:
    n_items: int = 4096  # item (and ad) id vocabulary; ids outside are folded in
    n_categories: int = 17  # content categories of items (0 = none), from the catalogue
    n_placements: int = 512
    history_len: int = 50  # L
    dim: int = 24  # D; 32 gave the same held-out AUC(view) (0.7952 vs 0.7951) at +8% latency
    heads: int = 1  # H; 2 gave the same held-out AUC (0.7944 vs 0.7942) at +19% latency
    hidden: int = 48  # 64 gave the same held-out AUCs at +13% latency
    n_kinds: int = 4  # CreativeKind 1..3, 0 unknown
    n_positions: int = 8  # OpenRTB ad positions 0..7
    n_devices: int = 8  # OpenRTB device types 0..7
    n_hours: int = 24
    max_duration: float = 60.0  # video seconds scale

    def to_dict(self) -> dict:
        return asdict(self)


class TargetAttention(nn.Module):
    """Multi-head scaled dot-product attention of candidates over a sequence."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        # No output projection: the MLP's first layer is linear in the pooled values.

    def forward(self, ads: torch.Tensor, seq: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """ads [..., C, D], seq [..., S, D], bias [..., S] (0 valid, -1e9 masked) → [..., C, D].

        Leading dims are free: training passes a batch, serving none (fewer graph nodes).
        """
        q, k, v = self.query(ads), self.key(seq), self.value(seq)  # [..., C|S, D]
        scale = 1.0 / math.sqrt(q.shape[-1] // self.heads)
        if self.heads == 1:  # no head axis at all: a leaner graph for the common case
            scores = q @ k.transpose(-1, -2) * scale + bias.unsqueeze(-2)  # [..., C, S]
            return scores.softmax(dim=-1) @ v  # [..., C, D]
        *lead, _, d = q.shape
        h, dh = self.heads, d // self.heads
        # -1 for the candidate and sequence axes keeps the exported graph free of shape math
        q = q.reshape(*lead, -1, h, dh).transpose(-2, -3)  # [..., H, C, dh]
        k = k.reshape(*lead, -1, h, dh).transpose(-2, -3)  # [..., H, S, dh]
        v = v.reshape(*lead, -1, h, dh).transpose(-2, -3)  # [..., H, S, dh]
        scores = q @ k.transpose(-1, -2) * scale + bias.unsqueeze(-2).unsqueeze(
            -3
        )  # [..., H, C, S]
        pooled = scores.softmax(dim=-1) @ v  # [..., H, C, dh]
        return pooled.transpose(-2, -3).reshape(*lead, -1, d)  # [..., C, D], heads side by side


class AttentionModel(nn.Module):
    def __init__(self, config: ModelConfig, item_category: torch.Tensor | None = None) -> None:
        """`item_category` [n_items] is the catalogue's category of every item (0 = none):
        side information that lets rare items borrow strength from their category."""
        super().__init__()
        self.config = config
        d = config.dim
        if item_category is None:
            item_category = torch.zeros(config.n_items, dtype=torch.int32)
        self.register_buffer("item_category", item_category.to(torch.int32))  # [n_items]
        self.item_id = nn.Embedding(config.n_items, d, padding_idx=0)
        self.category = nn.Embedding(config.n_categories, d, padding_idx=0)
        self.kind = nn.Embedding(config.n_kinds, d)
        self.duration = nn.Linear(1, d)
        self.null = nn.Parameter(torch.zeros(1, d))  # the always-valid history slot
        self.attention = TargetAttention(d, config.heads)
        self.placement = nn.Embedding(config.n_placements, d)
        self.position = nn.Embedding(config.n_positions, d)
        self.device = nn.Embedding(config.n_devices, d)
        self.hour = nn.Embedding(config.n_hours, d)
        self.candidate_in = nn.Linear(3 * d + 1, config.hidden)
        self.context_in = nn.Linear(d, config.hidden, bias=False)  # shared by all candidates
        self.mlp = nn.Sequential(nn.ReLU(), nn.Linear(config.hidden, config.hidden // 2), nn.ReLU())
        self.heads = nn.Linear(config.hidden // 2, 3)
        self.log_sigma = nn.Parameter(torch.tensor(0.0))  # spread of log(seconds | view)
        nn.init.normal_(self.item_id.weight, std=0.1)

    def item(self, ids: torch.Tensor) -> torch.Tensor:
        """Item vectors [..., D]: the id's own embedding plus its category's."""
        return self.item_id(ids) + self.category(self.item_category[ids])

    def forward(
        self,
        ads: torch.Tensor,  # [..., C] int32 item ids, 0 < id < n_items
        ad_kind: torch.Tensor,  # [..., C] int32, 0 <= kind < n_kinds
        ad_duration: torch.Tensor,  # [..., C] float32 seconds
        history: torch.Tensor,  # [..., L] int32, newest first, 0 = padding
        context: torch.Tensor,  # [..., 4] int32: placement, position, device type, hour
    ) -> torch.Tensor:
        """Raw outputs [..., C, 3]: view logit, click-given-view logit, mu of log seconds.

        Ids must be in range (the runtime folds foreign ids in before calling);
        leading dims are a batch in training and absent when serving.
        """
        ctx = (
            self.placement(context[..., 0])
            + self.position(context[..., 1])
            + self.device(context[..., 2])
            + self.hour(context[..., 3])
        )  # [..., D]
        exposures = (history.unsqueeze(-2) == ads.unsqueeze(-1)).sum(-1)  # [..., C]
        return self.body(
            self.item(ads),
            ad_kind,
            ad_duration,
            exposures.to(torch.float32),
            history,
            self.item(history),
            self.context_in(ctx),
        )

    def body(
        self,
        ad_items: torch.Tensor,  # [..., C, D] item vectors of the ads
        ad_kind: torch.Tensor,  # [..., C] int32
        ad_duration: torch.Tensor,  # [..., C] float32
        exposures: torch.Tensor,  # [..., C] float32 times the ad is in the history
        history: torch.Tensor,  # [..., L] int32
        history_items: torch.Tensor,  # [..., L, D] item vectors of the history
        context_hidden: torch.Tensor,  # [..., hidden] the context's share of the first layer
    ) -> torch.Tensor:
        """Everything after the table lookups, shared by training and the serving graph."""
        cfg = self.config
        ad = (
            ad_items
            + self.kind(ad_kind)
            + self.duration((ad_duration * (1.0 / cfg.max_duration)).unsqueeze(-1))
        )  # [..., C, D]
        null = self.null.expand(*history.shape[:-1], 1, cfg.dim)  # [..., 1, D]
        seq = torch.cat([null, history_items], dim=-2)  # [..., L+1, D]
        masked = (history == 0).to(ad.dtype) * -1e9  # [..., L]
        bias = torch.cat([torch.zeros_like(masked[..., :1]), masked], dim=-1)  # [..., L+1]
        pooled = self.attention(ad, seq, bias)  # [..., C, D]
        candidate = torch.cat([ad, pooled, ad * pooled, exposures.unsqueeze(-1)], dim=-1)
        h = self.candidate_in(candidate) + context_hidden.unsqueeze(-2)  # [..., C, hidden]
        return self.heads(self.mlp(h))  # [..., C, 3]

    def predict(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw outputs [..., 3] → P(view), E[attentive seconds], P(click), each [...]."""
        p_view = torch.sigmoid(raw[..., 0])
        p_click = p_view * torch.sigmoid(raw[..., 1])
        sigma = self.log_sigma.exp()
        seconds_if_viewed = torch.exp(raw[..., 2] + 0.5 * sigma * sigma)
        seconds = (p_view * seconds_if_viewed).clamp(max=MAX_ATTENTIVE_SECONDS)
        return p_view, seconds, p_click

    def loss(
        self,
        raw: torch.Tensor,  # [B, 1, 3]
        viewed: torch.Tensor,  # [B] float 0/1
        seconds: torch.Tensor,  # [B] float, 0 when not viewed
        clicked: torch.Tensor,  # [B] float 0/1
    ) -> torch.Tensor:
        """Hurdle loss for a zero-inflated heavy tail: BCE on the view, then, on viewed
        impressions only, the log-normal NLL of the seconds and BCE on the click."""
        raw = raw[:, 0, :]  # [B, 3]
        view_loss = F.binary_cross_entropy_with_logits(raw[:, 0], viewed)
        seen = viewed > 0
        if not seen.any():
            return view_loss
        log_s = torch.log(seconds[seen].clamp(min=1e-3))
        z = (log_s - raw[seen, 2]) / self.log_sigma.exp()
        seconds_loss = (0.5 * z * z + self.log_sigma).mean()
        click_loss = F.binary_cross_entropy_with_logits(raw[seen, 1], clicked[seen])
        return view_loss + 0.5 * seconds_loss + click_loss


class ServingModel(nn.Module):
    """One impression at a time, as the exchange asks: what gets exported to ONNX.

    Everything that does not depend on the request is folded into tables once, at
    construction; the outputs equal `AttentionModel`'s up to float rounding, with
    fewer and smaller products per candidate (no query, key or value projection
    and no ad-side first-layer product at serving time, no in-graph mask):

        ad_table      [n_items, D+1+hidden]  item vector | 1 | its share of the first layer
        kind_table    [n_kinds, D+1+hidden]  the same for the creative kind (+ duration bias)
        duration_row  [D+1+hidden]           the same per second of video
        key_table     [H, n_items+1, D+1]    history item's key through the query projection
                                             and scale | mask bias (-1e9 for padding id 0)
        value_table   [H, n_items+1, D/H]    history item's value
        context_table [P+8+8+24, hidden]     context embeddings through the first layer

    With one head the key and value tables have no head axis. Row n_items of
    them is the null slot. An ad's constant 1
    meets the key's mask column in the score product, so padding is masked there.
    """

    def __init__(self, model: AttentionModel) -> None:
        super().__init__()
        self.model = model
        cfg = model.config
        d, h = cfg.dim, cfg.heads
        attention = model.attention
        first = model.candidate_in.weight  # [hidden, 3D+1] over [ad, pooled, ad*pooled, exposures]
        with torch.no_grad():

            def ad_rows(vectors: torch.Tensor, one: float) -> torch.Tensor:
                """[n, D] → [n, D+1+hidden]"""
                ones = torch.full((vectors.shape[0], 1), one)
                return torch.cat([vectors, ones, vectors @ first[:, :d].T], dim=-1)

            items = model.item(torch.arange(cfg.n_items))  # [N, D]
            duration = model.duration.weight.T / cfg.max_duration  # [1, D] per second
            seq = torch.cat([items, model.null])  # [N+1, D], the null slot last
            q = attention.query.weight.view(h, d // h, d)  # [H, dh, D]
            k = attention.key.weight.view(h, d // h, d)  # [H, dh, D]
            keys = seq @ k.transpose(-1, -2) @ q / math.sqrt(d // h)  # [H, N+1, D]
            mask = torch.zeros(h, cfg.n_items + 1, 1)
            mask[:, 0] = -1e9  # padding
            v = attention.value.weight.view(h, d // h, d)  # [H, dh, D]
            values = seq @ v.transpose(-1, -2)  # [H, N+1, dh]
            tables = [model.placement.weight, model.position.weight, model.device.weight,
                      model.hour.weight]  # fmt: skip
            context = model.context_in(torch.cat(tables))  # [P + 8 + 8 + 24, hidden]
            context[: tables[0].shape[0]] += model.candidate_in.bias  # once per impression
            sizes = torch.tensor([0] + [t.shape[0] for t in tables[:-1]])
        self.register_buffer("ad_table", ad_rows(items, 1.0))
        self.register_buffer("kind_table", ad_rows(model.kind.weight + model.duration.bias, 0.0))
        self.register_buffer("duration_row", ad_rows(duration, 0.0)[0])
        keys = torch.cat([keys, mask], dim=-1)  # [H, N+1, D+1]
        # one head (the shipped model) needs no head axis: a leaner graph
        self.register_buffer("key_table", keys[0] if h == 1 else keys)
        self.register_buffer("value_table", values[0] if h == 1 else values)
        self.register_buffer("pooled_in", first[:, d:].clone())  # [hidden, 2D+1]
        self.register_buffer("context_table", context)
        self.register_buffer("context_offsets", sizes.cumsum(0).to(torch.int32))  # [4]
        self.register_buffer("null_slot", torch.tensor([cfg.n_items], dtype=torch.int32))

    def forward(
        self,
        ads: torch.Tensor,  # [C] int32
        ad_kind: torch.Tensor,  # [C] int32
        ad_duration: torch.Tensor,  # [C] float32
        exposures: torch.Tensor,  # [C] float32: counted by the runtime, cheaper than in-graph
        history: torch.Tensor,  # [L] int32
        context: torch.Tensor,  # [4] int32
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = self.model.config.dim
        ad_x = (
            self.ad_table[ads]
            + self.kind_table[ad_kind]
            + ad_duration.unsqueeze(-1) * self.duration_row
        )  # [C, D+1+hidden]
        query, ad_hidden = ad_x[:, : d + 1], ad_x[:, d + 1 :]  # [C, D+1] (ad, 1), [C, hidden]
        seq = torch.cat([self.null_slot, history])  # [S = L+1]
        keys = self.key_table.index_select(-2, seq)  # [(H,) S, D+1]
        scores = query @ keys.transpose(-1, -2)  # [(H,) C, S], padding -1e9
        pooled = scores.softmax(dim=-1) @ self.value_table.index_select(-2, seq)  # [(H,) C, dh]
        if pooled.dim() == 3:
            pooled = pooled.transpose(0, 1).reshape(-1, d)  # [C, D], heads side by side
        x = torch.cat([pooled, query[:, :d] * pooled, exposures.unsqueeze(-1)], dim=-1)
        context_hidden = self.context_table[context + self.context_offsets].sum(0)  # [hidden]
        h = ad_hidden + x @ self.pooled_in.T + context_hidden  # [C, hidden]
        raw = self.model.heads(self.model.mlp(h))  # [C, 3]
        return self.model.predict(raw)  # p_view, seconds, p_click: each [C]
