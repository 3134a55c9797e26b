"""The documentation site builds with mkdocs in strict mode: a page missing from the nav, a broken
link or a missing anchor fails the build (mkdocs.yml's `validation`), so docs/ has no dead link."""

import subprocess
import sys

from conftest import REPO


def test_docs_build_strict(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "site" / "code-map" / "index.html").is_file()


def test_strict_build_fails_on_a_broken_link(tmp_path):
    """The check above can fail: the same build over a copy of docs/ with one dead link does."""
    import shutil

    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "index.md"
    page.write_text(page.read_text() + "\nSee [nowhere](pipeline.md#no-such-heading).\n")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "no-such-heading" in out.stdout + out.stderr


def test_readme_is_short_and_its_links_reach_existing_pages():
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) <= 14 * 1024
    import re

    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / target).is_file(), target
