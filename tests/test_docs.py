"""The README and docs/ stand alone: every relative link points at a file of the repository, and no document cites
the background notes that are not part of it."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

DOCUMENTS = [ROOT / "README.md", ROOT / "tests" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(document):
    assert document.is_file(), f"{document} is missing"
    text = document.read_text()
    targets = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    missing = [t for t in targets if not (document.parent / t).exists()]
    assert not missing, f"{document.relative_to(ROOT)} links to missing files: {missing}"


def test_no_citation_outside_the_repository():
    cited = []
    for path in [*DOCUMENTS, *ROOT.glob("tools/*.py"), *ROOT.glob("segnet_bvlc/**/*.py"), *ROOT.glob("prototxt/*.py"),
                 *ROOT.glob("layers/*.py"), *ROOT.glob("prototxt/models/*/*.prototxt")]:
        for name in ("paper_facts.md", "caffe_semantics.md", "shared/reference"):
            if name in path.read_text():
                cited.append(f"{path.relative_to(ROOT)}: {name}")
    assert not cited, cited
