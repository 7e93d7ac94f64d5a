"""dialog-m2fnet: losses against numpy / hand computation, masking and pooling semantics."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

from edge_sdk.models.dialog_m2fnet.augment import add_white_noise, time_warp
from edge_sdk.models.dialog_m2fnet.family import TINY
from edge_sdk.models.dialog_m2fnet.losses import (
    adaptive_margin,
    adaptive_margin_triplet,
    batch_hard_triplets,
    covariance_loss,
    mined_triplet_loss,
    pair_distance,
    pair_similarity,
    variance_loss,
)
from edge_sdk.models.dialog_m2fnet.modules import (
    M2FAudioEncoder,
    M2FDialog,
    M2FTextEncoder,
    M2FVisualEncoder,
)
from edge_sdk.models.dialog_m2fnet.text import EMOTION_WORDS, TINY_VOCAB, tokenize
from edge_sdk.preprocess.audio import MelConfig, log_mel

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
    # |a-p| = sqrt(2), |a-n| = 2, |p-n| = sqrt(2) (Euclidean, raw embeddings); similarities
    # 1 - |x̂-ŷ|/2 on unit rows: sim_ap = 1 - sqrt(2)/2, sim_an = 0
    sim_ap, sim_an = 1 - math.sqrt(2) / 2, 0.0
    m_sim = 1 + 2 / math.exp(4 * sim_ap)
    m_dissim = 1 + 2 / math.exp(4 - 4 * sim_an)
    expected = math.sqrt(2) - (2 + math.sqrt(2)) / 2 + m_sim + m_dissim
    a, p, n = (torch.tensor([[x, y]], dtype=torch.float64) for x, y in ((1, 0), (0, 1), (-1, 0)))
    assert float(adaptive_margin_triplet(a, p, n)) == pytest.approx(expected, rel=1e-9)


def test_adaptive_margin_grows_with_triplet_hardness() -> None:
    # the margin adapts per triplet: a positive pointing away and a negative pointing toward
    # the anchor each raise it (Eq. 11 fed with similarities)
    easy = float(adaptive_margin(torch.tensor(1.0), torch.tensor(0.0)))
    hard = float(adaptive_margin(torch.tensor(0.0), torch.tensor(1.0)))
    assert easy == pytest.approx(2 + 4 / math.exp(4))
    assert hard == pytest.approx(6.0)
    assert float(adaptive_margin(torch.tensor(0.5), torch.tensor(0.5))) < hard


def test_well_separated_triplets_cost_nothing() -> None:
    # the old loss (distances halved into [0, 1], margin >= 2.04) could never reach zero
    a = torch.tensor([[5.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    p = torch.tensor([[5.2, 0.1], [0.1, 4.3]], dtype=torch.float64)
    n = torch.tensor([[-6.0, 0.5], [0.2, -5.0]], dtype=torch.float64)
    assert float(adaptive_margin_triplet(a, p, n)) == 0.0
    # the same directions squeezed together violate the margin again
    assert float(adaptive_margin_triplet(0.1 * a, 0.1 * p, 0.1 * n)) > 0.0


def test_adaptive_margin_gradient_differs_from_a_constant_margin() -> None:
    a = torch.tensor([[1.0, 0.2]], dtype=torch.float64, requires_grad=True)
    p = torch.tensor([[0.3, 1.0]], dtype=torch.float64)
    n = torch.tensor([[-1.0, 0.4]], dtype=torch.float64)
    value = adaptive_margin_triplet(a, p, n)
    value.backward()
    # a constant margin of the same value: same loss, but no pull through the margin
    with torch.no_grad():
        constant = float(
            adaptive_margin(pair_similarity(a, p), pair_similarity(a, n)).squeeze()
        )
    b = a.detach().clone().requires_grad_(True)
    d = pair_distance
    fixed = torch.relu(d(b, p) - 0.5 * (d(b, n) + d(p, n)) + constant).mean()
    fixed.backward()
    assert float(fixed.detach()) == pytest.approx(float(value.detach()), rel=1e-12)
    assert not torch.allclose(a.grad, b.grad)


def test_batch_hard_mining_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(10, 4))
    labels = np.array([0, 0, 1, 1, 1, 2, 0, 2, 3, 1])  # label 3 has no positive
    anchors, pos, neg = batch_hard_triplets(torch.from_numpy(z), torch.from_numpy(labels))
    expected = []
    for i in range(len(z)):
        d = np.linalg.norm(z - z[i], axis=1)
        same = [j for j in range(len(z)) if labels[j] == labels[i] and j != i]
        other = [j for j in range(len(z)) if labels[j] != labels[i]]
        if same and other:
            expected.append((i, max(same, key=lambda j: d[j]), min(other, key=lambda j: d[j])))
    got = list(zip(anchors.tolist(), pos.tolist(), neg.tolist(), strict=True))
    assert got == expected
    assert 8 not in anchors.tolist()


def test_a_batch_without_labelled_utterances_mines_nothing_and_costs_zero() -> None:
    """All utterances unlabelled (a dialog whose classes were all mapped away) used to
    crash argmax on an empty matrix."""
    z = torch.zeros((0, 4), requires_grad=True)
    anchors, pos, neg = batch_hard_triplets(z, torch.zeros(0, dtype=torch.long))
    assert anchors.numel() == pos.numel() == neg.numel() == 0
    loss = mined_triplet_loss(z, torch.zeros(0, dtype=torch.long))
    assert float(loss) == 0.0 and loss.requires_grad


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


def _tone_mels() -> tuple[torch.Tensor, torch.Tensor, MelConfig]:
    cfg = MelConfig(n_mels=16)
    t = np.arange(4800) / cfg.sample_rate
    waves = [np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 1200 * t[:3200])]
    mels = [log_mel(w.astype(np.float32), cfg.sample_rate, cfg) for w in waves]
    mel = np.full((2, 16, mels[0].shape[1]), -3.0, dtype=np.float32)
    mask = np.zeros((2, mels[0].shape[1]), dtype=np.float32)
    for i, m in enumerate(mels):
        mel[i, :, : m.shape[1]] = m
        mask[i, : m.shape[1]] = 1.0
    return torch.from_numpy(mel), torch.from_numpy(mask), cfg


def test_awgn_on_log_mel_matches_waveform_noise_through_the_front_end() -> None:
    # white noise added to a waveform and put through log_mel has, per mel band, the power
    # the augmentation adds at the same SNR (signal mel power / noise mel power)
    cfg = MelConfig(n_mels=16)
    t = np.arange(16000) / cfg.sample_rate
    wave = (np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 2500 * t)).astype(np.float32)
    noise = (0.05 * np.random.default_rng(0).standard_normal(wave.shape)).astype(np.float32)
    clean = log_mel(wave, cfg.sample_rate, cfg)
    noise_power = np.exp(log_mel(noise, cfg.sample_rate, cfg)).mean(1)  # per band
    snr = 10 * np.log10((np.exp(clean) - cfg.log_floor).mean() / noise_power.mean())
    mel, mask = torch.from_numpy(clean)[None], torch.ones(1, clean.shape[1])
    noisy = add_white_noise(mel, mask, cfg, (snr, snr), torch.Generator().manual_seed(1))
    added = (noisy[0].double().exp() - mel[0].double().exp()).mean(1).numpy()
    np.testing.assert_allclose(added, noise_power, rtol=0.2)


def test_awgn_leaves_padding_alone() -> None:
    mel, mask, cfg = _tone_mels()
    noisy = add_white_noise(mel, mask, cfg, (20.0, 20.0), torch.Generator().manual_seed(0))
    assert torch.equal(noisy[1, :, mask[1] < 0.5], mel[1, :, mask[1] < 0.5])
    assert not torch.equal(noisy[1, :, mask[1] > 0.5], mel[1, :, mask[1] > 0.5])


def test_time_warp_keeps_length_and_moves_frames() -> None:
    mel, mask, _ = _tone_mels()
    ramp = torch.arange(mel.shape[2], dtype=torch.float32).expand_as(mel) * mask[:, None, :]
    warped = time_warp(ramp, mask, 0.2, torch.Generator().manual_seed(3))
    assert warped.shape == ramp.shape
    assert not torch.equal(warped, ramp)
    valid = mask[0] > 0.5
    row = warped[0, 0, valid]
    assert float(row[0]) == 0.0 and float(row[-1]) == float(ramp[0, 0, valid][-1])
    assert bool((row[1:] >= row[:-1]).all())  # monotone: a warp, not a shuffle


def test_audio_augmentation_is_seeded_in_training_and_off_at_eval() -> None:
    from edge_sdk.models.dialog_m2fnet.family import make_model, synthetic_batch

    config = dataclasses.replace(TINY, modality_dropout=0.0)
    model = make_model(config)
    batch = synthetic_batch(config, np.random.default_rng(0), 2)
    model.eval()
    with torch.no_grad():
        eval_a, eval_b = model(batch)["audio"], model(batch)["audio"]
    assert torch.equal(eval_a, eval_b)
    model.train()
    with torch.no_grad():
        torch.manual_seed(5)
        train_a = model(batch)["audio"]
        torch.manual_seed(5)
        train_b = model(batch)["audio"]
        train_c = model(batch)["audio"]
    assert torch.equal(train_a, train_b)  # seeded: reproducible
    assert not torch.equal(train_a, train_c)  # fresh noise and warp per step
    assert not torch.allclose(train_a, eval_a, atol=1e-4)  # the training input is augmented
    off = make_model(dataclasses.replace(config, audio_time_warp=0.0, audio_noise_snr_db=()))
    off.load_state_dict(model.state_dict())
    off.train()
    with torch.no_grad():
        assert torch.allclose(off(batch)["audio"], eval_a, atol=1e-6)


def test_time_warp_is_finite_for_every_centre_and_shift() -> None:
    # the warp target may come within one frame of the end (a division by zero before)
    mel = torch.randn(1, 4, 21)
    mask = torch.ones(1, 21)
    for seed in range(200):
        warped = time_warp(mel, mask, 0.1, torch.Generator().manual_seed(seed))
        assert torch.isfinite(warped).all(), seed
