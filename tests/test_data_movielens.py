"""MovieLens loaders: the real ml-latest-small folder, and hand-made bad rows."""

from __future__ import annotations

import pytest

from minireason.data.accounting import DataError, LoadReport
from minireason.data.movielens import load_movielens


def test_real_movielens_ratings_tags_genres(data_dir):
    folder = data_dir / "movielens-latest-small"
    report = LoadReport()
    reviews, items = load_movielens(folder, report)
    ratings, movies, tags = (
        report.file(folder / n) for n in ("ratings.csv", "movies.csv", "tags.csv")
    )
    assert ratings.lines_read == 100_836 + 1 and ratings.header == 1
    assert len(reviews) == ratings.kept == 100_836
    assert len({r.user for r in reviews}) == 610
    assert movies.kept == len(items) == 9_742
    assert tags.lines_read == 3_683 + 1 == tags.accounted
    assert all(0.5 <= r.rating <= 5.0 and r.text == "" for r in reviews)
    toy_story = items["1"]
    assert toy_story.title == "Toy Story (1995)"
    assert toy_story.tags[:5] == ["adventure", "animation", "children", "comedy", "fantasy"]
    assert "(no genres listed)" not in {t for m in items.values() for t in m.tags}
    assert "funny" in items["60756"].tags  # a user tag from tags.csv


def _folder(tmp_path, ratings, tags="1,1,Twist,5\n1,99,x,5\n"):
    (tmp_path / "ratings.csv").write_text(ratings)
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n1,"A, The (1999)",Drama|Comedy\n')
    (tmp_path / "tags.csv").write_text("userId,movieId,tag,timestamp\n" + tags)
    return tmp_path


def test_bad_rows_are_counted_by_reason(tmp_path):
    folder = _folder(
        tmp_path,
        "userId,movieId,rating,timestamp\n1,1,4.0,100\n1,1\n"
        "2,1,nine,100\n3,1,7.5,100\n4,1,3.5,\n5,1,2.0,200\n",
    )
    report = LoadReport()
    reviews, items = load_movielens(folder, report)
    fr = report.file(folder / "ratings.csv")
    assert [r.user for r in reviews] == ["1", "5"]
    assert fr.skipped == {
        "wrong number of fields": 1,
        "wrong type for 'rating'": 1,
        "'rating' out of range": 1,
        "wrong type for 'timestamp'": 1,
    }
    assert fr.accounted == fr.lines_read == 7
    assert items["1"].title == "A, The (1999)" and items["1"].tags == ["drama", "comedy", "twist"]
    assert report.file(folder / "tags.csv").skipped == {"unknown movieId": 1}


def test_missing_header_column_names_file_and_column(tmp_path):
    folder = _folder(tmp_path, "userId,movieId,stars,timestamp\n1,1,4,100\n")
    with pytest.raises(ValueError, match=r"ratings\.csv:1: header lacks column\(s\) \['rating'\]"):
        load_movielens(folder, LoadReport())


def test_strict_names_the_line(tmp_path):
    folder = _folder(
        tmp_path, "userId,movieId,rating,timestamp\n1,1,4.0,100\n1,1,x,100\n", tags="1,1,twist,5\n"
    )
    with pytest.raises(DataError, match=r"ratings\.csv:3: wrong type for 'rating'"):
        load_movielens(folder, LoadReport(strict=True))
