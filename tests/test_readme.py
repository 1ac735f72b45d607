"""The README is a user's first contact: what it names must exist, and it must say how to
install the library and where the less obvious parts are (issue 15 item 10)."""

import pathlib
import re

import jinverse as ji

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_files_it_names_exist():
    named = set(re.findall(r"`([\w./-]+\.(?:md|py|toml))`", README)) | set(re.findall(r"\b([A-Z]+\.md)\b", README))
    missing = sorted(f for f in named if not (ROOT / f).exists() and not list(ROOT.glob(f"**/{f}")))
    assert not missing, f"README names files that do not exist: {missing}"


def test_every_ji_name_it_uses_exists():
    for dotted in sorted(set(re.findall(r"\bji((?:\.[A-Za-z_]\w*)+)", README))):
        obj = ji
        for part in dotted.strip(".").split("."):
            assert hasattr(obj, part), f"README uses ji{dotted}, which does not exist"
            obj = getattr(obj, part)


def test_it_covers_what_a_new_user_looks_for():
    assert re.search(r"^\s+pip install \.", README, re.M)  # library use, not only `make`
    for needle in ("ji.plots", "ji.problems.cycled_4dvar", "pylops.JaxOperator", "--checkpoint",
                   "ji.load_result(\"out/gl\")"):
        assert needle in README, needle
    assert "the error against the truth, the time (compilation apart)" not in README  # superseded
    assert "which way is better" in README and "every phase" in README
