"""Assignment A3: prompt building and loss masking, on plain lists of token ids.

Fill in the five functions below (replace each ``raise NotImplementedError``), then grade
yourself:

    minireason grade A3 tutorials/assignments/A3_prompts/prompts_student.py

Rules: Python and NumPy only (no minireason); do not change the names or signatures. The
README gives the exact template and rules; tutorial 05 shows the package doing the same on
real reviews. Nothing here needs a tokenizer: every tag, aspect and rating is already a
list of token ids ("a piece"). A review / history entry is a dict::

    {"item": "B0002E1G5C", "time": 1388534400,       # Unix seconds
     "tags": [[812, 44], [97]],                      # one piece per tag
     "aspects": [[1503]],                            # one piece per aspect the user mentioned
     "rating": [301, 19]}                            # the piece " rated 5"

Special token ids come in a dict ``special``: ``<pad>=0 <eos>=1 <hist>=2 <item>=3
<reason>=4 <sep>=5`` (use the dict, not the numbers).
"""

import numpy as np  # noqa: F401 (you will need it)


def select_history(reviews, target_time, max_items):
    """The history of a target review: no leakage of the target or its future.

    Args:
        reviews: one user's review dicts, in any order (the target review may be among them).
        target_time: the time of the review being explained.
        max_items: how many history entries at most (>= 1).

    Returns:
        The dicts with ``time`` strictly before ``target_time``, sorted oldest first (a
        stable sort: equal times keep their input order), the newest ``max_items`` of them.
    """
    raise NotImplementedError("select_history: filter by time, sort, keep the newest max_items")


def build_prompt(history, item_tags, max_tokens, special):
    """The prompt token ids, at most ``max_tokens`` long.

    Args:
        history: history dicts, oldest first (may be empty).
        item_tags: the target item's tag pieces (a list of lists of ids).
        max_tokens: the budget, >= 2 (raise ValueError below 2).
        special: the special-token ids by name.

    Returns:
        ``[block of history[0]] ... [block of history[-1]] <item> TAGS <reason>`` as one list
        of ints; a history block is ``<hist> TAGS <sep> ASPECTS <sep> RATING``. See the
        README for how the budget is spent (the item first; then the newest history).
    """
    raise NotImplementedError("build_prompt: item segment first, then history newest first")


def finetune_example(prompt_ids, reason_ids, eos_id, context):
    """One fine-tuning sequence and its loss mask.

    Args:
        prompt_ids: the prompt (``len(prompt_ids) < context``).
        reason_ids: the reason sentence's ids (cut from the end if it does not fit).
        eos_id: the ``<eos>`` id.
        context: the longest sequence allowed.

    Returns:
        ``(ids, loss_mask)``, two lists of the same length: ``ids = prompt + reason + [eos]``
        (at most ``context`` long); ``loss_mask`` is 1 on the reason and ``<eos>`` tokens and
        0 on the prompt.
    """
    raise NotImplementedError("finetune_example: concatenate, cut the reason, build the mask")


def next_token_targets(ids, loss_mask):
    """Inputs and next-token targets of one sequence, and which targets count.

    Returns:
        ``(inputs, targets, target_mask)``, lists of ``len(ids) - 1``: position ``t`` reads
        ``ids[t]`` and must predict ``ids[t + 1]``; it counts when that target token is a
        reason or ``<eos>`` token.
    """
    raise NotImplementedError("next_token_targets: shift by one")


def masked_cross_entropy(logits, targets, mask):
    """Mean negative log-likelihood over the counted positions.

    Args:
        logits: ``(N, V)`` float array; targets: ``(N,)`` ints in ``[0, V)``; mask: ``(N,)``
            of 0/1, at least one 1.

    Returns:
        A float: ``sum(mask * nll) / sum(mask)`` with ``nll = -log softmax(logits)[target]``,
        stable for logits near 1000.
    """
    raise NotImplementedError("masked_cross_entropy: stable log-softmax, pick, masked mean")
