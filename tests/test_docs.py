"""The documentation site (mkdocs.yml, `make docs`) builds with warnings as errors, its API
reference documents every public name, and the guide pages include the repository's own
Markdown files rather than copies."""
import importlib
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow

# module -> the page that documents it; every name of the module's __all__ must have an anchor
API_PAGES = {"bmx.nn": "api-nn", "bmx.model_zoo": "api-model-zoo", "bmx.engine": "api-engine",
             "bmx.converter": "api-converter", "bmx.info": "api-tools"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    mkdocs = os.path.join(os.path.dirname(sys.executable), "mkdocs")
    if not os.path.exists(mkdocs):
        pytest.skip("mkdocs is not installed in this environment (make env installs requirements.txt)")
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([mkdocs, "build", "--strict", "-d", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "WARNING" not in r.stderr, r.stderr[-4000:]
    return out


def _page(site, name):
    with open(os.path.join(site, name, "index.html") if name else os.path.join(site, "index.html")) as f:
        return f.read()


def _anchors(html):
    return set(re.findall(r'id="(bmx(?:\.[A-Za-z0-9_]+)*)"', html))


@pytest.mark.parametrize("module", sorted(API_PAGES))
def test_every_public_name_is_documented(site, module):
    mod = importlib.import_module(module)
    ids = _anchors(_page(site, API_PAGES[module]))
    missing = [n for n in mod.__all__ if f"{module}.{n}" not in ids]
    assert not missing, f"{module}: no API entry for {missing}"


def test_package_shortcuts_and_named_constructors_are_documented(site):
    import bmx.model_zoo
    ids = _anchors(_page(site, "api-bmx"))
    # bmx.get_model, bmx.summary and bmx.convert are the functions documented here
    assert {"bmx", "bmx.model_zoo.get_model", "bmx.model_summary.summary", "bmx.converter.convert"} <= ids
    zoo = _anchors(_page(site, "api-model-zoo"))
    missing = [n for n in bmx.model_zoo.get_model_list() if f"bmx.model_zoo.{n}" not in zoo]
    assert not missing, missing


def test_numpydoc_sections_are_rendered(site):
    html = _page(site, "api-engine")
    # Model's numpydoc "Parameters"/"Raises" sections become tables naming the parameters
    model = html[html.index('id="bmx.engine.Model"'):]
    assert "Parameters" in model[:20000] and "num_threads" in model[:20000] and "ModelError" in model[:20000]


@pytest.mark.parametrize("page,source", [("", "README.md"), ("training", "docs/training.md"),
                                         ("model-format", "docs/model-format.md"),
                                         ("performance", "docs/performance.md"),
                                         ("CONTRIBUTING", "docs/CONTRIBUTING.md")])
def test_guide_pages_are_the_repository_files(site, page, source):
    """Each guide page shows its source's headings (included at build time, not copied)."""
    with open(os.path.join(ROOT, source)) as f:
        headings = [ln.lstrip("#").strip() for ln in f if re.match(r"^#{1,3} \S", ln)]
    html = re.sub(r"<[^>]+>", "", _page(site, page))
    import html as htmllib
    text = htmllib.unescape(html)
    assert headings, source
    missing = [h for h in headings if h.replace("`", "") not in text]
    assert not missing, f"{source}: headings not on the page: {missing}"


def test_results_page_includes_results_when_present(site):
    text = _page(site, "results-index")
    path = os.path.join(ROOT, "docs", "results.md")
    if not os.path.exists(path):
        pytest.skip("docs/results.md has not been written by a run yet")
    with open(path) as f:
        first = next(ln for ln in f if ln.startswith("# ")).lstrip("# ").strip()
    assert first.replace("`", "") in re.sub(r"<[^>]+>", "", text)


def test_make_docs_target_exists():
    # `make docs` is the documented way to build; check the Makefile recipe runs mkdocs strictly
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    r = subprocess.run(["make", "-n", "docs"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "mkdocs build --strict" in r.stdout, r.stdout + r.stderr
