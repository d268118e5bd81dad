"""A small file of Chinese movie comments in the generic JSONL format, built by the tests
themselves (no real data is committed): users, films, star ratings, times and comments of
one to three sentences about the films' plot, actors, picture, music and so on, the
sentiment of each sentence following the film's qualities and the rating.

    write_reviews(path, n_users=45, n_films=30, per_user=22)  # about 1,000 comments

Each film is good at some aspects and weak at others, so the aspects a film's comments
mention, and what they say of them, differ from film to film; a film's comments also name
its own particular things (its director's style, its setting), which few other films' do.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ASPECTS = [
    "剧情",
    "演员",
    "画面",
    "音乐",
    "节奏",
    "结局",
    "特效",
    "台词",
    "镜头",
    "配乐",
    "故事",
    "角色",
]
GOOD = ["精彩", "出色", "感人", "紧凑", "漂亮", "细腻", "震撼", "自然"]
BAD = ["拖沓", "一般", "无聊", "糟糕", "老套", "尴尬", "平淡"]
DEGREE = ["很", "非常", "特别", "挺", "真的", "确实"]
SETTINGS = ["上海", "北京", "西藏", "海边", "小镇", "沙漠", "太空", "校园", "医院", "战场"]
GENRES = ["喜剧", "爱情", "科幻", "悬疑", "动画", "战争", "纪录片", "武侠"]
OPENERS = ["这部电影", "整体来说", "说实话", "看完以后", "总的来说", "昨天去看了", "第二次看"]
CLOSERS = ["推荐大家去看。", "值得一看。", "有点失望。", "不推荐。", "还会再看。", "期待续集。"]


def _film(rng: random.Random, index: int) -> dict:
    aspects = rng.sample(ASPECTS, 6)
    return {
        "id": f"m{index:03d}",
        "good": aspects[:3],
        "bad": aspects[3:5],
        "other": aspects[5],
        "setting": SETTINGS[index % len(SETTINGS)],
        "genre": GENRES[index % len(GENRES)],
        "quality": rng.uniform(2.5, 4.8),
    }


def _sentence(rng: random.Random, aspect: str, good: bool) -> str:
    word = rng.choice(GOOD if good else BAD)
    return f"{aspect}{rng.choice(DEGREE)}{word}"


def _comment(rng: random.Random, film: dict, rating: int) -> str:
    liked = rating >= 4
    parts = []
    if rng.random() < 0.4:
        parts.append(f"{rng.choice(OPENERS)}，")
    aspect = rng.choice(film["good"] if liked else film["bad"])
    parts.append(_sentence(rng, aspect, liked))
    if rng.random() < 0.7:
        other = rng.choice(film["good"] + film["bad"])
        parts.append(f"，{_sentence(rng, other, other in film['good'])}")
    parts.append("。")
    if rng.random() < 0.5:
        parts.append(f"故事发生在{film['setting']}，是一部{film['genre']}片。")
    if rng.random() < 0.5:
        parts.append(rng.choice(CLOSERS[:4] if liked else CLOSERS[2:]))
    return "".join(parts)


def write_reviews(
    path: Path, n_users: int = 45, n_films: int = 30, per_user: int = 22, seed: int = 0
) -> Path:
    """Write ``n_users * per_user`` comments (each user on ``per_user`` distinct films) to
    ``path`` as JSONL with the fields ``user``, ``item``, ``rating`` (1-5), ``time`` and
    ``text``; returns ``path``."""
    rng = random.Random(seed)
    films = [_film(rng, i) for i in range(n_films)]
    lines = []
    for u in range(n_users):
        user = f"u{u:03d}"
        for t, film in enumerate(rng.sample(films, min(per_user, n_films))):
            rating = max(1, min(5, round(film["quality"] + rng.gauss(0, 0.8))))
            lines.append(
                {
                    "user": user,
                    "item": film["id"],
                    "rating": rating,
                    "time": 1_600_000_000 + 86_400 * t + 60 * u,
                    "text": _comment(rng, film, rating),
                }
            )
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", "utf-8")
    return path
