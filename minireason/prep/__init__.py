"""Seed steps 2 and 3: item features and prompts, tokenised; the prepared directory.

Reads: the records and load report of :mod:`minireason.data`. Writes: a *prepared
directory* (``minireason prepare --out DIR``), whose files and format version are the
contract in :mod:`minireason.prep.prepared`; everything after this stage reads that
directory, never the raw data. Taught in tutorials 04 (the tokenizer) and 05 (behaviour to
prompts); assignment A3 builds prompts and their loss masks.

Modules, in the order data flows:

- ``features``: aspect mining, explanation targets, item tags, user profiles, the focus;
- ``prompts``: (history, item tags, focus) -> prompt token ids and their segment map;
- ``tokenizer``: the byte-level BPE, trained on training-split text only;
- ``prepare``: the job, stage by stage;
- ``prepared``: the on-disk contract, its writer helpers and its reader.
"""
