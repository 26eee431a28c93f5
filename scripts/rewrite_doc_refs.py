#!/usr/bin/env python3
"""Rewrites references to the team's internal design notes into references to the repository's docs/.

The code used to cite two documents that live outside the repository (`../shared/spec/TWISTER_SPEC.md`
as "spec 3.6.4", "spec section 7", ... and `../shared/INTERFACES.md` as "INTERFACES §3",
"INTERFACES.md section 2", ...). Their content now lives in `docs/`, with the same section numbers:

  spec <N>          -> docs/original.md §<N>      (every section except 10)
  spec 10.<n>       -> docs/quirks.md §10.<n>     (spec section 10 = the quirks of the original)
  quirk 10.<n>      -> docs/quirks.md §10.<n>
  INTERFACES <n>    -> docs/interfaces.md §<n>
  TWISTER_SPEC.md   -> docs/original.md           (bare file name)

Lists, ranges and items keep their shape: "(spec 2.4, 2.5, 7.1-7.4)" -> "(docs/original.md §2.4,
§2.5, §7.1-7.4)"; "spec 3.6.5, 10.2" -> "docs/original.md §3.6.5, docs/quirks.md §10.2";
"spec 7.3 item 4, 10.8" -> "docs/original.md §7.3 item 4, docs/quirks.md §10.8";
"INTERFACES §2, §8" -> "docs/interfaces.md §2, §8".

Every section number it emits is checked against the headings of the docs pages (a heading whose
text starts with that number); a missing one is reported and makes the exit status non-zero.
References to `../shared/...` (golden fixtures, data tables) and to STYLE.md are listed, never
rewritten.

Usage (from anywhere; paths are relative to the repository root):
  python scripts/rewrite_doc_refs.py --dry-run          # counts, the diff, leftovers; writes nothing
  python scripts/rewrite_doc_refs.py --dry-run --no-diff
  python scripts/rewrite_doc_refs.py                    # rewrite the files in place
Exit status: 0 when every reference was rewritten to an existing heading and nothing is left over
(../shared references do not count), 1 otherwise.
"""
from __future__ import annotations

import argparse
import collections
import difflib
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SELF = pathlib.Path(__file__).resolve()

# What is scanned, and what is not rewritten.
TARGETS = ("twister_jax", "configs", "tests", "experiments", "scripts", ".ci", "README.md", "Dockerfile",
           "setup.py")
SUFFIXES = {".py", ".md", ".ipynb", ".sh", ".csv", ".txt", ".cfg", ".toml", ".ini", ".yaml", ".yml"}
NAMES = {"Dockerfile", "run"}                  # extension-less files (`.ci/run`)
SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints"}
FIXTURE_DIRS = ("tests/golden/",)              # recorded fixture data: reported, not rewritten

PAGES = {"original": "docs/original.md", "quirks": "docs/quirks.md", "interfaces": "docs/interfaces.md"}

# The check the brief asks for, after rewriting (same as `grep -rnE` on those paths).
LEFTOVER_RE = re.compile(r"INTERFACES|TWISTER_SPEC|\bspec [0-9]|spec section|\.\./shared")
SHARED_RE = re.compile(r"(?:\.\./)?shared/(?:golden|data|spec|hooks)[\w./-]*|\.\./shared[\w./-]*")
STYLE_RE = re.compile(r"STYLE\.md(?:[ \t]+(?:section|§)[ \t]*\d+)?")

# --------------------------------------------------------------------------------------- patterns
NUM = r"\d+(?:\.\d+)*(?:b(?![A-Za-z]))?"       # 3, 3.6.4, 10.2b
RANGE = rf"{NUM}(?:-{NUM})?"                    # 5.3-5.8
ITEM = r"(?:[ \t]+items?[ \t]+\d+(?:[ \t]*(?:,|and)[ \t]*\d+(?![.\d]))*)?"   # "item 4", "items 2, 3"
SEP = r"(?:[ \t]*,[ \t]*|[ \t]*/[ \t]*|[ \t]+and[ \t]+)"
LIST = rf"{RANGE}{ITEM}(?:{SEP}{RANGE}{ITEM})*"

# "spec 7.3", "Spec section 1.1", "spec sections 1.1, 2.5", "TWISTER_SPEC.md §3", a line break allowed
# between the word and the number (docstrings wrap there).
SPEC_RE = re.compile(
    rf"(?<![\w/.-])(?:[Ss]pec|TWISTER_SPEC(?:\.md)?)(?P<gap>[ \t]*\n[ \t]*|[ \t]+)(?:(?:sections?|§)[ \t]*)?(?P<list>{LIST})")
QUIRK_RE = re.compile(rf"\bquirks?[ \t]+(?P<list>10\.{NUM}(?:{SEP}10\.{NUM})*)")
IF_NUM = r"§?[ \t]*\d+(?![.\d])"
INTERFACES_RE = re.compile(
    rf"\bINTERFACES(?:\.md)?(?:[ \t]+(?:sections?[ \t]+)?|[ \t]*)(?P<list>{IF_NUM}(?:[ \t]*(?:,|and|/)[ \t]*{IF_NUM})*)")
BARE_RE = re.compile(r"(?:\.\./)?(?:shared/)?(?:spec/)?TWISTER_SPEC(?:\.md)?|(?:\.\./)?(?:shared/)?INTERFACES\.md|\bINTERFACES\b")
TOKEN_RE = re.compile(rf"(?P<range>{RANGE})(?P<item>{ITEM})|(?P<sep>{SEP})")

# Literal rewrites for references that no pattern can place (checked, and reported when used).
# "spec README 8.2" / "spec 8 item 2" cite item 2 of section 8 of the golden fixtures' README
# (observe writes zeros into the caller's action tensor), which is quirk 10.17.
LITERAL = [
    ("spec README 8.2", "docs/quirks.md §10.17"),
    ("spec 8 item 2, 10.17", "docs/quirks.md §10.17"),
    ("Choices not in the spec (the original", "Choices not in the original (docs/original.md; the original"),
    ("Choices not in the spec:", "Choices not in the original (docs/original.md):"),
    ("Choices (not in the spec)", "Choices (not in the original, docs/original.md)"),
    ("None = the spec's (0, quadruped 2)", "None = the original's (0, quadruped 2)"),
    ("Ambiguous: the spec writes", "Ambiguous: docs/original.md §5.5 writes"),
    ("`configs/common.py` cites the spec section of every value",
     "`configs/common.py` cites the section of docs/original.md behind every value"),
    ("| switch | spec | `False` means |", "| switch | docs | `False` means |"),
]
# README's quirk table: "| `episode_mask_gating` | 3.6.5, 10.2 |" -> the second cell as spec numbers.
TABLE_ROW_RE = re.compile(r"^(?P<head>\| `[a-z_]+` \| )(?P<list>" + LIST + r")(?P<tail> \|)", re.M)


# ---------------------------------------------------------------------------------------- headings
def headings() -> dict:
    """{page key: set of section numbers that head a section of that page}."""
    out = {}
    for key, rel in PAGES.items():
        path = ROOT / rel
        nums = set()
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                m = re.match(r"^#{1,6}[ \t]+§?(\d+(?:\.\d+)*(?:b(?![A-Za-z]))?)(?=[ \t.:]|$)", line)
                if m:
                    nums.add(m.group(1))
        out[key] = nums
    return out


class Rewriter:
    def __init__(self):
        self.heads = headings()
        self.missing = []                       # (file, ref, page, number)
        self.counts = collections.Counter()     # form -> count
        self.file = ""

    def _check(self, page: str, num: str, ref: str) -> None:
        if num not in self.heads[page]:
            self.missing.append((self.file, ref, PAGES[page], num))

    @staticmethod
    def spec_page(num: str) -> str:
        return "quirks" if num.split(".")[0].rstrip("b") == "10" else "original"

    def _spec_list(self, text: str, ref: str, gap: str = " ") -> str:
        """'2.4, 2.5, 7.1-7.4' -> 'docs/original.md §2.4, §2.5, §7.1-7.4' (page named on change)."""
        out, page = [], None
        for m in TOKEN_RE.finditer(text):
            if m.group("sep") is not None:
                out.append(m.group("sep"))
                continue
            rng = m.group("range")
            ends = rng.split("-")
            p = self.spec_page(ends[0])
            for e in ends:
                self._check(self.spec_page(e), e, ref)
                if self.spec_page(e) != p:
                    self.missing.append((self.file, ref, "range across pages", rng))
            lo_hi = "-".join(ends)
            prefix = "" if p == page else PAGES[p] + (gap if page is None else " ")
            out.append(f"{prefix}§{lo_hi}{m.group('item')}")
            page = p
        return "".join(out)

    def _spec(self, m: re.Match) -> str:
        self.counts["spec <N>"] += 1
        gap = m.group("gap") if "\n" in m.group("gap") else " "   # keep a line break where it was
        return self._spec_list(m.group("list"), m.group(0), gap)

    def _quirk(self, m: re.Match) -> str:
        self.counts["quirk 10.<n>"] += 1
        return self._spec_list(m.group("list"), m.group(0))

    def _interfaces(self, m: re.Match) -> str:
        self.counts["INTERFACES <n>"] += 1
        parts = []
        for tok in re.finditer(r"(?P<n>\d+)|(?P<sep>[ \t]*(?:,|and|/)[ \t]*)", m.group("list")):
            if tok.group("n"):
                self._check("interfaces", tok.group("n"), m.group(0))
                parts.append(("" if parts else PAGES["interfaces"] + " ") + "§" + tok.group("n"))
            else:
                parts.append(tok.group("sep"))
        return "".join(parts)

    def _bare(self, m: re.Match) -> str:
        self.counts["bare file name"] += 1
        return PAGES["interfaces"] if "INTERFACES" in m.group(0) else PAGES["original"]

    def _table_row(self, m: re.Match) -> str:
        self.counts["README quirk table cell"] += 1
        return m.group("head") + self._spec_list(m.group("list"), m.group(0)) + m.group("tail")

    def rewrite(self, rel: str, text: str) -> str:
        self.file = rel
        for old, new in LITERAL:
            n = text.count(old)
            if n:
                self.counts[f"literal: {old!r}"] += n
                text = text.replace(old, new)
        if rel == "README.md":
            text = TABLE_ROW_RE.sub(self._table_row, text)
        text = QUIRK_RE.sub(self._quirk, text)
        text = SPEC_RE.sub(self._spec, text)
        text = INTERFACES_RE.sub(self._interfaces, text)
        text = BARE_RE.sub(self._bare, text)
        for _, new in LITERAL:                 # literal targets must exist as headings too
            for page_rel, num in re.findall(r"(docs/\w+\.md) §(\d+(?:\.\d+)*)", new):
                if new in text:
                    key = next(k for k, v in PAGES.items() if v == page_rel)
                    self._check(key, num, new)
        return text


# ------------------------------------------------------------------------------------------- files
def files():
    for target in TARGETS:
        path = ROOT / target
        if path.is_file():
            yield path
        elif path.is_dir():
            for p in sorted(path.rglob("*")):
                if not p.is_file() or SKIP_DIRS & set(p.parts) or p.resolve() == SELF:
                    continue
                fixture = p.relative_to(ROOT).as_posix().startswith(FIXTURE_DIRS) and p.suffix == ".json"
                if p.suffix in SUFFIXES or p.name in NAMES or fixture:
                    yield p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="print counts, diff and leftovers; write nothing")
    ap.add_argument("--no-diff", action="store_true", help="with --dry-run: counts and leftovers only")
    args = ap.parse_args(argv)

    rw = Rewriter()
    for key, nums in rw.heads.items():
        if not nums:
            print(f"error: {PAGES[key]} has no numbered headings", file=sys.stderr)
            return 1
    changed, leftovers, shared, style, fixtures = {}, [], [], [], []
    per_file = collections.Counter()
    for path in files():
        rel = path.relative_to(ROOT).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if rel.startswith(FIXTURE_DIRS):   # fixture notes (.json included): reported only
            for i, line in enumerate(text.splitlines(), 1):
                for m in LEFTOVER_RE.finditer(line):
                    fixtures.append(f"{rel}:{i}: ...{line[max(0, m.start() - 60):m.end() + 40]}...")
            continue
        before = sum(rw.counts.values())
        new = rw.rewrite(rel, text)
        per_file[rel] = sum(rw.counts.values()) - before
        if new != text:
            changed[rel] = (text, new)
        for i, line in enumerate(new.splitlines(), 1):
            for m in SHARED_RE.finditer(line):
                shared.append(f"{rel}:{i}: {line.strip()}")
            for m in STYLE_RE.finditer(line):
                style.append(f"{rel}:{i}: {line.strip()}")
            if LEFTOVER_RE.search(line) and not SHARED_RE.search(line):
                leftovers.append(f"{rel}:{i}: {line.strip()}")

    if args.dry_run and not args.no_diff:
        for rel, (old, new) in changed.items():
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                       f"a/{rel}", f"b/{rel}"))
    if not args.dry_run:
        for rel, (_, new) in changed.items():
            (ROOT / rel).write_text(new, encoding="utf-8")

    changed_lines = sum(
        sum(1 for a, b in zip(o.splitlines(), n.splitlines()) if a != b) for o, n in changed.values())
    print("\n== summary" + (" (dry run: nothing written)" if args.dry_run else ""))
    print(f"files changed: {len(changed)}; lines changed: {changed_lines}; references rewritten: "
          f"{sum(rw.counts.values())}")
    for form, n in sorted(rw.counts.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d}  {form}")
    print("per file:")
    for rel, n in sorted(per_file.items()):
        if n:
            print(f"  {n:4d}  {rel}")
    print(f"\n== section numbers missing from the docs headings: {len(rw.missing)}")
    for f, ref, page, num in rw.missing:
        print(f"  {f}: {ref!r} -> {page} §{num}")
    print(f"\n== leftovers after rewriting (INTERFACES|TWISTER_SPEC|spec N|spec section): {len(leftovers)}")
    for line in leftovers:
        print("  " + line)
    print(f"\n== references to ../shared (reported, not rewritten): {len(shared)}")
    for line in shared:
        print("  " + line)
    print(f"\n== references to STYLE.md (not in the repository; reported, not rewritten): {len(style)}")
    for line in style:
        print("  " + line)
    print(f"\n== old-style references inside fixture data {FIXTURE_DIRS} (not rewritten): {len(fixtures)}")
    for line in fixtures:
        print("  " + line)
    return 1 if rw.missing or leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
