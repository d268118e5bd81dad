"""Seed step 1: load, validate and clean behaviour logs, then split them.

Reads: review files (Amazon 2014/2018 JSON lines, Amazon metadata, MovieLens CSVs, generic
JSON lines or CSV with a column map), gzip or plain. Writes nothing itself: it hands
``Review`` and ``ItemMeta`` records and a ``LoadReport`` (every line kept, merged or skipped by
reason, with file:line) to :mod:`minireason.prep.prepare`. Taught in tutorials 04 and 05.

Modules, in the order data flows:

- ``io``: gzip-or-plain detection by magic bytes, streaming lines, truncated-gzip handling;
- ``accounting``: every line accounted for (kept, merged or skipped by reason, with
  file:line), in a ``LoadReport``;
- ``records``: the common ``Review`` and ``ItemMeta`` records;
- ``clean``: text cleaning, field checks, de-duplication, per-user time order;
- ``amazon``, ``movielens``, ``generic``: one loader per source format;
- ``split``: leave-last-out and seeded 8:1:1 splits, k-core filtering;
- ``fetch``: download a named public dataset into a cache, with resume and checksums.
"""
