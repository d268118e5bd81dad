"""Generation with a KV cache against recomputing everything from scratch, and the samplers."""

from collections import Counter

import numpy as np
import pytest

from minireason.nn.model import GPT, GPTConfig
from minireason.reason.generate import choose_tokens, filter_probs, generate, nucleus_threshold

PROMPTS = [[5, 9, 2, 17], [3], [8, 1, 4, 4, 30, 12, 7, 22, 6], [40, 41]]


def make_model(copy=False):
    """float64, so cached and recomputed logits agree to ~1e-15 and no sampled token flips."""
    cfg = GPTConfig(
        vocab_size=48,
        block_size=32,
        n_layer=2,
        n_head=2,
        n_embd=16,
        dtype="float64",
        seed=3,
        copy=copy,
    )
    m = GPT(cfg).eval()
    rng = np.random.default_rng(0)  # larger weights than the init: peakier, varied logits
    for name, a in m.params.items():
        if a.ndim == 2:
            m.params[name] = rng.normal(0.0, 0.3, size=a.shape)
    if copy:
        m.params["copy.w_gate"][:] = rng.normal(0.0, 0.5, size=16)  # some rows mostly copy
    return m


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "copy-head"])
def model(request):
    return make_model(copy=request.param)


def last_logits(model, seq):
    logits, _ = model.forward(np.array([seq]), keep_cache=False)
    return logits[:, -1]  # (1, V)


def reference(model, prompt, max_new_tokens, eos_id=None, row_rng=None, **sampling):
    """Token-by-token generation recomputing the full forward each step (no cache)."""
    seq = list(prompt)
    out = []
    while len(out) < max_new_tokens and len(seq) < model.config.block_size:
        logits = last_logits(model, seq)
        u = None if row_rng is None else [row_rng.random()]
        token = int(choose_tokens(logits, u, **sampling)[0])
        out.append(token)
        seq.append(token)
        if token == eos_id:
            break
    return out


def check_logprobs(model, gen):
    """The returned log-probs are those of ``GPT.token_logprobs`` on the full sequence."""
    for prompt, tokens, logp in zip(gen.prompts, gen.tokens, gen.logprobs, strict=True):
        seq = np.array([prompt + tokens])
        expected = model.token_logprobs(seq[:, :-1], seq[:, 1:])[0, len(prompt) - 1 :]
        np.testing.assert_allclose(logp, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["single", "ragged-batch"])
def test_greedy_cache_equals_recompute(model, prompts):
    gen = generate(model, prompts, max_new_tokens=12, temperature=0)
    for r, prompt in enumerate(prompts):
        assert gen.tokens[r] == reference(model, prompt, 12, temperature=0)
        assert gen.finish[r] == "max_new_tokens"
    check_logprobs(model, gen)


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["single", "ragged-batch"])
def test_sampled_cache_equals_recompute(model, prompts):
    sampling = {"temperature": 0.8, "top_k": 20, "top_p": 0.9}
    gen = generate(model, prompts, max_new_tokens=15, rng=7, **sampling)
    row_rngs = np.random.default_rng(7).spawn(len(prompts))
    for r, prompt in enumerate(prompts):
        assert gen.tokens[r] == reference(model, prompt, 15, row_rng=row_rngs[r], **sampling)
    check_logprobs(model, gen)


def test_eos_stops_each_row_on_its_own(model):
    free = generate(model, PROMPTS, max_new_tokens=10, temperature=0)
    eos = free.tokens[0][3]  # a token row 0 emits at step 4 (or earlier)
    gen = generate(model, PROMPTS, max_new_tokens=10, temperature=0, eos_id=eos)
    for r, prompt in enumerate(PROMPTS):
        expected = reference(model, prompt, 10, eos_id=eos, temperature=0)
        assert gen.tokens[r] == expected
        assert gen.finish[r] == ("eos" if expected[-1] == eos else "max_new_tokens")
    assert gen.finish[0] == "eos" and len(gen.tokens[0]) <= 4
    assert any(f == "max_new_tokens" for f in gen.finish)  # the other rows went on
    check_logprobs(model, gen)


def test_rows_finishing_at_different_steps_match_recompute(model):
    """Finished rows stay in the batch until half of it has finished, then leave it; either
    way every row gets what generating it alone gives."""
    sampling = {"temperature": 1.0}
    free = generate(model, PROMPTS, max_new_tokens=14, rng=5, n_samples=2, **sampling)
    eos = Counter(t for row in free.tokens for t in row).most_common(1)[0][0]
    gen = generate(model, PROMPTS, max_new_tokens=14, rng=5, n_samples=2, eos_id=eos, **sampling)
    lengths = [len(t) for t in gen.tokens]
    assert len(set(lengths)) >= 3 and gen.finish.count("eos") >= 4  # staggered, half or more
    row_rngs = np.random.default_rng(5).spawn(len(gen.tokens))
    for r, tokens in enumerate(gen.tokens):
        prompt = PROMPTS[r // 2]
        assert tokens == reference(model, prompt, 14, eos, row_rngs[r], **sampling)
    check_logprobs(model, gen)


def test_n_samples_equals_repeated_prompts(model):
    """One prefill shared by the samples gives what separate copies of the prompt give."""
    shared = generate(model, PROMPTS[:2], max_new_tokens=8, rng=11, n_samples=3)
    copies = generate(model, [PROMPTS[0]] * 3 + [PROMPTS[1]] * 3, max_new_tokens=8, rng=11)
    assert shared.tokens == copies.tokens
    assert shared.prompts == copies.prompts


def test_same_seed_same_output_and_seed_matters(model):
    a = generate(model, PROMPTS, max_new_tokens=10, rng=1)
    b = generate(model, PROMPTS, max_new_tokens=10, rng=np.random.default_rng(1))
    c = generate(model, PROMPTS, max_new_tokens=10, rng=2)
    assert a.tokens == b.tokens
    assert a.tokens != c.tokens


def test_top_k_1_is_greedy(model):
    greedy = generate(model, PROMPTS, max_new_tokens=10, temperature=0)
    top1 = generate(model, PROMPTS, max_new_tokens=10, temperature=1.0, top_k=1, rng=5)
    assert top1.tokens == greedy.tokens


def test_top_p_keeps_smallest_prefix_with_enough_mass():
    probs = np.array([0.0625, 0.5, 0.125, 0.3125])  # by probability: ids 1, 3, 2, 0
    logits = np.log(probs)[None, :]
    for p, kept_ids in [
        (0.3, [1]),
        (0.5, [1]),
        (0.6, [1, 3]),
        (0.8125, [1, 3]),
        (0.85, [1, 3, 2]),
        (0.95, [1, 3, 2, 0]),
        (1.0, [1, 3, 2, 0]),
    ]:
        kept = filter_probs(logits, top_p=p)[0]
        expected = np.zeros(4)
        expected[kept_ids] = probs[kept_ids] / probs[kept_ids].sum()
        np.testing.assert_allclose(kept, expected, err_msg=f"top_p={p}")


def test_top_p_keeps_ties_at_the_threshold():
    probs = np.array([0.125, 0.5, 0.125, 0.25])  # ids 0 and 2 tie for third place
    kept = filter_probs(np.log(probs)[None, :], top_p=0.8)[0]
    np.testing.assert_allclose(kept, probs)  # 0.5 + 0.25 < 0.8: both tied tokens stay


def test_top_k_and_sampling_follow_the_kept_distribution():
    logits = np.log(np.array([[0.1, 0.4, 0.2, 0.3]]))
    kept = filter_probs(logits, top_k=2)
    np.testing.assert_allclose(kept[0], [0, 4 / 7, 0, 3 / 7])
    # inverse CDF in id order: u below 4/7 picks id 1, above picks id 3, never a dropped id
    picks = [int(choose_tokens(logits, [u], top_k=2)[0]) for u in (0.0, 0.5, 0.58, 0.999)]
    assert picks == [1, 1, 3, 3]
    top_p_then_k = filter_probs(logits, top_k=3, top_p=0.5)  # top-3: .4/.9, .3/.9, .2/.9
    np.testing.assert_allclose(top_p_then_k[0], [0, 4 / 7, 0, 3 / 7])


def test_temperature_towards_zero_is_greedy():
    logits = np.array([[1.0, 3.0, 2.9, -1.0]])
    hot = filter_probs(logits, temperature=1.0)
    cold = filter_probs(logits, temperature=0.01)
    assert hot[0, 1] < 0.6  # at t = 1 the top two share the mass
    assert cold[0, 1] > 0.9999  # t -> 0: one-hot on the argmax
    assert int(choose_tokens(logits, temperature=0)[0]) == 1


def test_context_overflow_crops_prompt_and_stops_at_block_size(model):
    block = model.config.block_size
    long_prompt = list(range(1, 45))  # 44 tokens > block_size 32
    gen = generate(model, [long_prompt, [2, 3]], max_new_tokens=100, temperature=0)
    assert gen.n_cropped == [44 - (block - 1), 0]
    assert gen.prompts[0] == long_prompt[-(block - 1) :]  # the oldest tokens went
    assert gen.finish == ["length", "length"]
    assert [len(p) + len(t) for p, t in zip(gen.prompts, gen.tokens, strict=True)] == [block] * 2
    assert gen.tokens[1] == reference(model, [2, 3], 100, temperature=0)
    check_logprobs(model, gen)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prompts": []}, "non-empty list"),
        ({"prompts": [[1], []]}, r"prompts\[1\] is empty"),
        ({"prompts": [[1, 99]]}, r"prompts\[0\] holds token ids"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 1.5}, "top_p"),
        ({"n_samples": 0}, "n_samples"),
    ],
)
def test_bad_arguments_are_named(model, kwargs, message):
    args = {"prompts": [[1, 2]], **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(model, **args)


def test_nucleus_threshold_from_the_head_equals_the_full_sort():
    """Ranking only the most probable tokens finds the threshold a full sort finds, ties too."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        V, B = int(rng.integers(2, 300)), int(rng.integers(1, 6))
        logits = rng.standard_normal((B, V)) * rng.uniform(0.1, 8)
        if trial % 4 == 0:
            logits = np.round(logits)  # many ties
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        top_p = float(rng.uniform(0.01, 1.0))
        ranked = np.sort(probs, axis=-1)[:, ::-1]
        n_keep = ((np.cumsum(ranked, axis=-1) - ranked) < top_p).sum(-1)
        expected = np.take_along_axis(ranked, n_keep[:, None] - 1, axis=-1)
        head = int(rng.integers(1, 80))
        assert np.array_equal(nucleus_threshold(probs, top_p, head=head), expected), trial


def test_copy_head_records_what_each_token_copied_and_from_where():
    model = make_model(copy=True)
    gen = generate(model, PROMPTS, max_new_tokens=10, rng=3, temperature=1.0, n_samples=2)
    shares = np.concatenate(gen.copied)
    assert np.all((shares >= 0) & (shares <= 1 + 1e-12)) and shares.max() > 0.5
    for prompt, tokens, share, source in zip(
        gen.prompts, gen.tokens, gen.copied, gen.copied_from, strict=True
    ):
        context = prompt + tokens
        for i, (token, s, position) in enumerate(zip(tokens, share, source, strict=True)):
            assert position < len(prompt) + i  # only what came before this token
            assert (position >= 0) == (s > 0)
            if position >= 0:
                assert context[position] == token


def test_plain_model_copies_nothing():
    gen = generate(make_model(copy=False), PROMPTS, max_new_tokens=5, temperature=0)
    assert all(np.all(c == 0) and np.all(f == -1) for c, f in zip(gen.copied, gen.copied_from))
