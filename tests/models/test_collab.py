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


def _tiny_rating_bags():
    """Item 1 rated by users 1 (+1) and 2 (-1), item 2 by user 3 (+2); one-wide rows w[u] = u."""
    from models.bags import RatingBags
    bags = RatingBags(n_rows=3, n_members=4, width=1)
    with torch.no_grad():
        bags.weight.weight[:, 0] = torch.tensor([0.0, 1.0, 2.0, 3.0])
    bags.set_ratings(torch.tensor([0, 0, 2, 3]), torch.tensor([1, 2, 3]), torch.tensor([1.0, -1.0, 2.0]))
    return bags


def test_rating_bags_match_hand_computed_codes():
    from math import sqrt
    bags = _tiny_rating_bags()
    codes = bags(torch.tensor([1, 2, 0, 1]))[:, 0]
    # item 1: (1*1 + -1*2) / sqrt(2); item 2: 2*3 / 1; the unknown item 0 has no ratings
    assert torch.allclose(codes, torch.tensor([-1 / sqrt(2), 6.0, 0.0, -1 / sqrt(2)]))
    # leaving user 1 out of item 1 leaves -1*2 / sqrt(1); user 3 never rated item 1: nothing to leave out
    left = bags(torch.tensor([1, 1]), leave_out=torch.tensor([1, 3]))[:, 0]
    assert torch.allclose(left, torch.tensor([-2.0, -1 / sqrt(2)]))
    rating, found = bags.rating_of(torch.tensor([1, 1, 2, 2]), torch.tensor([2, 3, 3, 1]))
    assert rating.tolist() == [-1.0, 0.0, 2.0, 0.0] and found.tolist() == [True, False, True, False]


def test_rating_input_leaves_the_target_out_only_while_training():
    torch.manual_seed(0)
    m = DotProductBias(4, 3, 1, rating_input=True)
    m.item_ratings = _tiny_rating_bags()
    u, i = torch.tensor([1, 3]), torch.tensor([1, 1])    # user 1 rated item 1, user 3 did not
    train_scores = m.train().raw(u, i)
    eval_scores = m.eval().raw(u, i)
    assert not torch.isclose(train_scores[0], eval_scores[0])   # its own rating is hidden in training
    assert torch.isclose(train_scores[1], eval_scores[1])       # nothing of user 3 to hide
    assert torch.allclose(m.raw_all(u, torch.arange(3))[:, 1], eval_scores, atol=1e-6)


def test_dot_bias_side_features_offset_vectors_and_biases_by_hand():
    m = DotProductBias(3, 3, 2, user_side_dim=1, item_side_dim=2)
    with torch.no_grad():
        for p in (m.user_factors.weight, m.item_factors.weight, m.user_bias.weight, m.item_bias.weight):
            p.zero_()
        m.user_factors.weight[1] = torch.tensor([1.0, 0.0])
        m.item_factors.weight[2] = torch.tensor([0.0, 1.0])
        m.user_side.linear.weight[:] = torch.tensor([[1.0], [2.0], [0.5]])     # [d + 1, du]: vector, then bias
        m.item_side.linear.weight[:] = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    m.user_side.set_table(torch.tensor([[0.0], [2.0], [0.0]]))
    m.item_side.set_table(torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, -1.0]]))
    # user 1: vector (1,0) + 2*(1,2) = (3,4), bias 2*0.5 = 1; item 2: (0,1) + (3,-1) = (3,0), bias 3-1 = 2
    assert torch.allclose(m.raw(torch.tensor([1]), torch.tensor([2])), torch.tensor([3 * 3 + 4 * 0 + 1 + 2.0]))
    # explicit rows replace the table's (a cold user scored from features given at query time)
    given = m.raw(torch.tensor([0]), torch.tensor([2]), user_side=torch.tensor([[1.0]]))
    assert torch.allclose(given, torch.tensor([1 * 3 + 2 * 0 + 0.5 + 2.0]))
    assert torch.allclose(m.raw_all(torch.tensor([1]), torch.arange(3))[0, 2], torch.tensor(12.0))


def test_dot_bias_without_side_features_keeps_its_state_dict():
    # models saved before side features existed must load: no side buffers or maps unless asked for
    assert not any("side" in k for k in DotProductBias(3, 3, 2).state_dict())
    side = DotProductBias(3, 3, 2, user_side_dim=1).state_dict()
    assert "user_side.table" in side and "user_side.linear.weight" in side
    assert not any(k.startswith("item_side") for k in side)


def test_dense_rating_bags_match_the_embedding_bag_codes_and_gradients():
    from models.bags import RatingBags
    torch.manual_seed(0)
    n_rows, n_members = 30, 20
    pairs = torch.unique(torch.randint(1, n_rows, (200,)) * n_members + torch.randint(1, n_members, (200,)))
    rows, members = pairs // n_members, pairs % n_members                 # sorted by row, then member
    indptr = torch.zeros(n_rows + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=n_rows), 0)
    values = torch.randn(len(rows))
    sparse, dense = RatingBags(n_rows, n_members, 4), RatingBags(n_rows, n_members, 4, dense_limit=1 << 20)
    dense.load_state_dict(sparse.state_dict())
    for bags in (sparse, dense):
        bags.set_ratings(indptr, members, values)
    assert sparse.dense is None and dense.dense is not None
    q = torch.cat([rows[:10], torch.randint(0, n_rows, (20,))])
    out = torch.cat([members[:10], torch.randint(0, n_members, (20,))])   # ten pairs that exist, twenty at random
    for leave_out in (None, out):
        a, b = sparse(q, leave_out), dense(q, leave_out)
        assert torch.allclose(a, b, atol=1e-5)
        a.pow(2).sum().backward()
        b.pow(2).sum().backward()
        assert torch.allclose(sparse.weight.weight.grad, dense.weight.weight.grad, atol=1e-5)


def test_embedding_nn_rating_parts_leave_the_target_out_only_while_training():
    torch.manual_seed(0)
    m = EmbeddingNN(5, 4, 3, 3, layers=(8,), dropout=0.0, user_side_dim=1, bias=True, item_bag=2, user_bag=2)
    m.item_ratings.set_ratings(*_tiny_rating_bags_csr())                                  # items x users
    m.user_ratings.set_ratings(torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([1, 2]), torch.tensor([1.0, 2.0]))
    with torch.no_grad():
        m.user_bias.weight[1:] = 0.3
        m.item_bias.weight[1:] = -0.2
        m.global_bias.fill_(0.5)
    u, i = torch.tensor([1, 3, 0]), torch.tensor([1, 1, 2])   # user 1 rated item 1; user 3 did not; 0: unknown
    train_scores, eval_scores = m.train().raw(u, i), m.eval().raw(u, i)
    assert not torch.isclose(train_scores[0], eval_scores[0])   # its own rating is hidden in training
    assert torch.isclose(train_scores[1], eval_scores[1])       # nothing of user 3 to hide
    full = m.raw_all(u, torch.arange(4))                          # [3, 4]
    assert full.shape == (3, 4) and torch.allclose(full[torch.arange(3), i], eval_scores, atol=1e-6)
    # the unknown user: no embedding, bias or bag, only the global bias and its side row
    head = m.head(m.user_in(torch.cat([torch.zeros(1, 3), m.user_side(u[2:]), torch.zeros(1, 2)], -1))
                  + m.item_part(i[2:])[0])[:, 0]
    assert torch.allclose(eval_scores[2], head + 0.5 - 0.2, atol=1e-6)
    y = m(u, i)
    assert y.shape == (3,) and (y > 0).all() and (y < 5.5).all()


def _tiny_rating_bags_csr():
    """The ratings of _tiny_rating_bags as (indptr, members, values): item 1 by users 1 (+1) and 2 (-1), item 2 by 3."""
    return torch.tensor([0, 0, 2, 3, 3]), torch.tensor([1, 2, 3]), torch.tensor([1.0, -1.0, 2.0])


def test_embedding_nn_without_rating_parts_keeps_its_state_dict():
    # models saved before the biases and bags existed must load: no such keys unless asked for
    keys = EmbeddingNN(4, 5, 3, 3).state_dict()
    assert not any(k.split(".")[0] in ("user_bias", "item_bias", "global_bias", "item_ratings", "user_ratings")
                   for k in keys)
    full = EmbeddingNN(4, 5, 3, 3, bias=True, item_bag=2, user_bag=2).state_dict()
    assert {"user_bias.weight", "item_bias.weight", "global_bias", "item_ratings.weight.weight",
            "user_ratings.weight.weight"} <= set(full)


def test_embedding_nn_product_and_time_inputs_agree_across_scoring_paths():
    torch.manual_seed(0)
    m = EmbeddingNN(5, 6, 3, 4, layers=(8,), dropout=0.0, bias=True, product=3, time_dim=2).eval()
    assert m.user_in.in_features == 3 + 2 and m.user_proj.out_features == m.item_proj.out_features == 3
    assert m.score_width == 8 + 3
    u, i = torch.tensor([1, 4, 0]), torch.tensor([2, 5, 1])
    when = torch.tensor([[0.5, 1.0], [-0.5, 0.2], [0.0, 0.0]])
    pair = m.raw(u, i, when=when)                                             # [3]
    full = m.raw_all(u, torch.arange(6), when=when)                           # [3, 6]
    assert torch.allclose(full[torch.arange(3), i], pair, atol=1e-6)
    everything = m.score_all(u, m.all_items(), when=when)                     # [3, 5]: items 1..5
    assert torch.allclose(everything[torch.arange(3), i - 1], pair, atol=1e-6)
    assert not torch.allclose(m.raw(u, i), pair)                              # the time features count
    assert torch.allclose(m.raw(u, i), m.raw(u, i, when=torch.zeros(3, 2)))   # None reads zeros
    # the product term is what it says: W_p · (P_u x ⊙ P_i y) inside the first layer
    x_u = torch.cat([m.user_factors(u), m.user_side(u), when], -1)
    x_i = torch.cat([m.item_factors(i), m.item_side(i)], -1)
    h = m.user_in(x_u) + m.item_in(x_i) + m.product_in(m.user_proj(x_u) * m.item_proj(x_i))
    assert torch.allclose(m.head(h)[:, 0] + m.user_offset(u) + m.item_offset(i), pair, atol=1e-6)


def test_embedding_nn_without_product_has_no_product_keys():
    keys = set(EmbeddingNN(4, 5, 3, 3).state_dict())
    assert not any(k.split(".")[0] in ("user_proj", "item_proj", "product_in") for k in keys)
    assert {"user_proj.weight", "item_proj.weight", "product_in.weight"} <= set(EmbeddingNN(4, 5, 3, 3, product=2).state_dict())


def test_training_hides_the_time_of_hidden_user_ids_and_of_a_time_dropout_share():
    """Serving asks without a time (zeros): training shows the model such pairs, and never a hidden user's time."""
    torch.manual_seed(0)
    users, when = torch.tensor([1, 2, 3, 4]), torch.ones(4, 2)
    kept = EmbeddingNN(5, 6, 3, 4, layers=(8,), dropout=0.0, time_dim=2, time_dropout=0.0).train()
    shown, _ = kept.user_part(users, when=when, ids=users)
    blank, _ = kept.user_part(users, when=None, ids=users)
    assert not torch.allclose(shown, blank)                                  # the times reach the first layer
    hidden = torch.tensor([0, 2, 0, 4])                                      # users 1 and 3 hidden by id dropout
    part, _ = kept.user_part(users, when=when, ids=hidden)
    zero, _ = kept.user_part(users, when=None, ids=hidden)
    assert torch.allclose(part[[0, 2]], zero[[0, 2]]) and not torch.allclose(part[[1, 3]], zero[[1, 3]])
    dropped = EmbeddingNN(5, 6, 3, 4, layers=(8,), dropout=0.0, time_dim=2, time_dropout=0.5).train()
    rows = torch.arange(1, 5).repeat(500)                                    # 2,000 pairs
    part, _ = dropped.user_part(rows, when=torch.ones(len(rows), 2), ids=rows)
    zero, _ = dropped.user_part(rows, when=None, ids=rows)
    share = (part - zero).abs().sum(1).eq(0).float().mean().item()
    assert 0.45 < share < 0.55                                               # about half shown without a time
    served, _ = dropped.eval().user_part(rows, when=torch.ones(len(rows), 2), ids=rows)   # no dropout outside training
    assert not (served - zero).abs().sum(1).eq(0).any()
