"""dialog-m2fnet: losses against numpy / hand computation, masking and pooling semantics."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

from edge_sdk.models.dialog_m2fnet_losses import (
    adaptive_margin_triplet,
    batch_hard_triplets,
    covariance_loss,
    variance_loss,
)
from edge_sdk.models.dialog_m2fnet_modules import (
    M2FAudioEncoder,
    M2FDialog,
    M2FTextEncoder,
    M2FVisualEncoder,
)
from edge_sdk.models.dialog_m2fnet_text import EMOTION_WORDS, TINY_VOCAB, tokenize
from edge_sdk.models.family_dialog_m2fnet import TINY

KWARGS = dataclasses.asdict(TINY)


def _z(seed: int = 0, n: int = 9, d: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) * rng.uniform(0.2, 2.0, d)).astype(np.float64)


def test_variance_loss_matches_numpy() -> None:
    z = _z()
    expected = np.mean(np.maximum(0.0, 1.0 - np.sqrt(z.var(axis=0, ddof=1) + 1e-4)))
    got = float(variance_loss(torch.from_numpy(z), floor=1.0, eps=1e-4))
    assert got == pytest.approx(expected, rel=1e-9)
    assert expected > 0  # some dims have std < 1, so the hinge is active
    assert float(variance_loss(torch.from_numpy(z * 100.0))) == 0.0


def test_covariance_loss_matches_numpy() -> None:
    z = _z(1)
    cov = np.cov(z, rowvar=False)
    off = cov - np.diag(np.diag(cov))
    expected = (off**2).sum() / z.shape[1]
    assert float(covariance_loss(torch.from_numpy(z))) == pytest.approx(expected, rel=1e-9)
    decorrelated = np.diag([1.0, 2.0, 3.0])  # rows with a diagonal covariance
    assert float(covariance_loss(torch.from_numpy(np.vstack([decorrelated, -decorrelated])))) == 0


def test_adaptive_margin_triplet_hand_computed() -> None:
    # unit vectors: |a-p| = sqrt(2), |a-n| = 2, |p-n| = sqrt(2); halved distances
    d_ap, d_an, d_pn = math.sqrt(2) / 2, 1.0, math.sqrt(2) / 2
    m_sim = 1 + 2 / math.exp(4 * d_ap)  # 1.11820...
    m_dissim = 1 + 2 / math.exp(-4 * d_an + 4)  # 3
    expected = d_ap - (d_an + d_pn) / 2 + m_sim + m_dissim
    assert expected == pytest.approx(3.971756, abs=1e-5)
    a, p, n = (torch.tensor([[x, y]], dtype=torch.float64) for x, y in ((1, 0), (0, 1), (-1, 0)))
    assert float(adaptive_margin_triplet(a, p, n)) == pytest.approx(expected, rel=1e-9)
    # distances are taken between L2-normalised embeddings: the scale does not matter
    assert float(adaptive_margin_triplet(3 * a, 0.5 * p, 7 * n)) == pytest.approx(expected)


def test_triplet_margin_is_a_stop_gradient_target() -> None:
    a = torch.tensor([[1.0, 0.2]], dtype=torch.float64, requires_grad=True)
    p = torch.tensor([[0.3, 1.0]], dtype=torch.float64)
    n = torch.tensor([[-1.0, 0.4]], dtype=torch.float64)
    adaptive_margin_triplet(a, p, n).backward()

    def dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = (torch.nn.functional.normalize(v, dim=-1) for v in (x, y))
        return 0.5 * torch.linalg.norm(x - y, dim=-1)

    b = a.detach().clone().requires_grad_(True)
    (dist(b, p) - 0.5 * (dist(b, n) + dist(p, n))).sum().backward()
    assert torch.allclose(a.grad, b.grad)


def test_batch_hard_mining_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(10, 4))
    labels = np.array([0, 0, 1, 1, 1, 2, 0, 2, 3, 1])  # label 3 has no positive
    anchors, pos, neg = batch_hard_triplets(torch.from_numpy(z), torch.from_numpy(labels))
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    expected = []
    for i in range(len(z)):
        d = 0.5 * np.linalg.norm(unit - unit[i], axis=1)
        same = [j for j in range(len(z)) if labels[j] == labels[i] and j != i]
        other = [j for j in range(len(z)) if labels[j] != labels[i]]
        if same and other:
            expected.append((i, max(same, key=lambda j: d[j]), min(other, key=lambda j: d[j])))
    got = list(zip(anchors.tolist(), pos.tolist(), neg.tolist(), strict=True))
    assert got == expected
    assert 8 not in anchors.tolist()


def test_faces_are_area_weighted_summed_and_max_pooled() -> None:
    torch.manual_seed(0)
    model = M2FVisualEncoder(**KWARGS).eval()
    rng = np.random.default_rng(4)
    u, f, n, s, fs = 3, 4, 3, TINY.scene_size, TINY.face_size
    scene = torch.from_numpy(rng.uniform(-1, 1, (u, f, 3, s, s)).astype(np.float32))
    faces = torch.from_numpy(rng.uniform(-1, 1, (u, f, n, 3, fs, fs)).astype(np.float32))
    areas = rng.uniform(0.05, 0.9, (u, f, n)).astype(np.float32)
    face_mask = (rng.random((u, f, n)) < 0.6).astype(np.float32)
    face_mask[0, 0, 0] = 1.0
    face_mask[2] = 0.0  # no face anywhere -> learned "no face" embedding
    frame_mask = np.ones((u, f), dtype=np.float32)
    frame_mask[1, 2:] = 0.0
    with torch.no_grad():
        got = model(scene, torch.from_numpy(frame_mask), faces, torch.from_numpy(areas),
                    torch.from_numpy(face_mask)).numpy()
        expected = []
        for i in range(u):
            frames = [j for j in range(f) if frame_mask[i, j]]
            scene_vec = np.max([model.scene(scene[i, j : j + 1])[0].numpy() for j in frames], 0)
            per_frame = []
            for j in frames:
                shown = [k for k in range(n) if face_mask[i, j, k]]
                if shown:
                    weighted = [
                        areas[i, j, k] * model.face(faces[i, j, k : k + 1])[0].numpy()
                        for k in shown
                    ]
                    per_frame.append(np.sum(weighted, 0))
            face_vec = np.max(per_frame, 0) if per_frame else model.no_face.numpy()
            expected.append(
                model.norm(model.out(torch.from_numpy(np.concatenate([scene_vec, face_vec]))))
                .numpy()
            )
    np.testing.assert_allclose(got, np.stack(expected), atol=1e-5)


def _dialog_inputs(rng: np.random.Generator, utterances: int) -> list[torch.Tensor]:
    def feat(d: int) -> torch.Tensor:
        return torch.from_numpy(rng.normal(size=(1, utterances, d)).astype(np.float32))

    mask = np.ones((1, utterances, 3), dtype=np.float32)
    mask[0, 1, 1] = 0.0  # utterance 1 has no audio
    return [feat(TINY.text_dim), feat(TINY.audio_dim), feat(TINY.visual_dim),
            torch.from_numpy(mask), torch.ones(1, utterances)]


def test_missing_modality_uses_the_learned_embedding_not_the_features() -> None:
    torch.manual_seed(0)
    model = M2FDialog(**KWARGS).eval()
    text, audio, visual, mask, utt = _dialog_inputs(np.random.default_rng(5), 4)
    with torch.no_grad():
        base = model(text, audio, visual, mask, utt)
        garbage = audio.clone()
        garbage[0, 1] = 1e3
        assert torch.allclose(model(text, garbage, visual, mask, utt), base, atol=1e-6)
        zeros = audio.clone()
        zeros[0, 1] = 0.0
        present = mask.clone()
        present[0, 1, 1] = 1.0
        assert not torch.allclose(model(text, zeros, visual, present, utt), base, atol=1e-4)


def test_padded_utterances_do_not_change_real_ones() -> None:
    torch.manual_seed(0)
    model = M2FDialog(**KWARGS).eval()
    rng = np.random.default_rng(6)
    short = _dialog_inputs(rng, 3)
    padded = [torch.cat([x, torch.from_numpy(rng.normal(size=(1, 2, *x.shape[2:])).astype(
        np.float32))], 1) for x in short[:4]]
    padded.append(torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0]]))
    with torch.no_grad():
        np.testing.assert_allclose(
            model(*padded)[:, :3].numpy(), model(*short).numpy(), atol=1e-5
        )


def test_audio_encoder_ignores_padding() -> None:
    torch.manual_seed(0)
    model = M2FAudioEncoder(**KWARGS).eval()
    rng = np.random.default_rng(7)
    for frames in (19, 20):
        mel = rng.normal(-5, 3, (1, TINY.n_mels, frames)).astype(np.float32)
        extra = rng.normal(0, 50, (1, TINY.n_mels, 9)).astype(np.float32)
        mask = np.concatenate([np.ones((1, frames)), np.zeros((1, 9))], 1).astype(np.float32)
        with torch.no_grad():
            alone = model(torch.from_numpy(mel), torch.ones(1, frames))
            padded = model(torch.from_numpy(np.concatenate([mel, extra], 2)),
                           torch.from_numpy(mask))
        np.testing.assert_allclose(padded.numpy(), alone.numpy(), atol=1e-5)


def test_text_encoder_mean_pools_attended_tokens() -> None:
    torch.manual_seed(0)
    model = M2FTextEncoder(**KWARGS).eval()
    tokens = tokenize(["oh joy", "well i think it is anger really"], "tiny-bert", 32)
    ids, mask = (torch.from_numpy(tokens[k]) for k in ("input_ids", "attention_mask"))
    assert tokens["input_ids"][0, :4].tolist() == [2, TINY_VOCAB.index("oh"),
                                                   TINY_VOCAB.index("joy"), 3]
    assert TINY_VOCAB.index(EMOTION_WORDS[6]) in tokens["input_ids"][1]
    with torch.no_grad():
        got = model(ids, mask).numpy()
        first = model.bert(input_ids=ids[:1, :4]).last_hidden_state[0].numpy()
    np.testing.assert_allclose(got[0], first.mean(0), atol=1e-5)


def test_tokenize_truncates_but_keeps_sep() -> None:
    text = " ".join(itertools.islice(itertools.cycle(["yeah", "no"]), 50))
    ids = tokenize([text], "tiny-bert", 8)["input_ids"][0]
    assert len(ids) == 8 and ids[0] == 2 and ids[-1] == 3
