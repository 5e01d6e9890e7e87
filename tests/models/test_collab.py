"""Shapes, ranges and the unknown-id row of the modules."""

import torch

from models.collab import DotProductBias, EmbeddingNN, emb_size, sigmoid_range


def test_sigmoid_range_bounds():
    x = torch.tensor([-1e4, 0.0, 1e4])
    y = sigmoid_range(x, 0.0, 5.5)
    assert torch.allclose(y, torch.tensor([0.0, 2.75, 5.5]))


def test_emb_size_follows_fastai_rule():
    assert emb_size(944) == round(1.6 * 944 ** 0.56) == 74
    assert emb_size(10 ** 9) == 600


def test_dot_bias_shapes_range_and_raw_all_agree():
    torch.manual_seed(0)
    m = DotProductBias(6, 9, 4)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=3.0)  # large weights push outputs towards the bounds
    u = torch.tensor([1, 2, 5])
    i = torch.tensor([3, 8, 1])
    y = m(u, i)
    assert y.shape == (3,) and (y >= 0).all() and (y <= 5.5).all()
    full = m.raw_all(u, torch.arange(9))
    assert full.shape == (3, 9)
    assert torch.allclose(full[torch.arange(3), i], m.raw(u, i), atol=1e-5)


def test_unknown_row_stays_zero_after_training_step():
    m = DotProductBias(4, 5, 3)
    opt = torch.optim.AdamW(m.parameters(), lr=0.1, weight_decay=0.1)
    loss = (m(torch.tensor([0, 1, 2]), torch.tensor([0, 3, 4])) - 4.0).pow(2).mean()
    loss.backward()
    opt.step()
    assert m.user_factors.weight[0].abs().sum() == 0 and m.item_bias.weight[0].abs().sum() == 0


def test_embedding_nn_with_side_features_shapes():
    torch.manual_seed(0)
    m = EmbeddingNN(6, 9, 5, 7, layers=(16, 8), dropout=0.2, user_side_dim=3, item_side_dim=2).eval()
    u, i = torch.tensor([1, 0, 5]), torch.tensor([2, 2, 0])
    y = m(u, i)
    assert y.shape == (3,) and (y > 0).all() and (y < 5.5).all()
    full = m.raw_all(u, torch.arange(9))
    assert full.shape == (3, 9)
    assert torch.allclose(full[torch.arange(3), i], m.raw(u, i), atol=1e-5)
    # explicit side rows replace the table rows and change the output
    other = m(u, i, user_side=torch.ones(3, 3))
    assert not torch.allclose(other, y)
