"""Docs, README and benchmark commands name data as `../shared/data/...` or `DIR`, never a path
that only exists on the machine that wrote them (the guide's rule; three had slipped in)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|home|root|tmp|Users|mnt)/[\w.-]+")


def test_no_machine_paths_in_docs_or_benchmark_commands():
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "benchmarks").glob("*.py")]
    found = [f"{f.relative_to(ROOT)}:{n}: {m.group(0)}" for f in files
             for n, line in enumerate(f.read_text().splitlines(), 1)
             for m in [MACHINE_PATH.search(line)] if m]
    assert len(files) > 10 and not found, found


def test_the_pattern_catches_what_it_should():
    assert MACHINE_PATH.search("--root /work/shared/data/mnist")
    assert MACHINE_PATH.search("see /home/alice/data")
    assert not MACHINE_PATH.search("--root ../shared/data/mnist --out runs/x")
    assert not MACHINE_PATH.search("https://example.org/work/thing")
