"""The HTML report of a table: progress collapsed, and the page checked in headless Chromium."""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from vidrepro import cli, report

CHECK = """<script>
window.addEventListener("load", () => {
  const found = {
    tables: document.querySelectorAll("table").length,
    images: [...document.images].map((i) => i.naturalWidth),
    links: [...document.links].map((a) => a.href),
  };
  const pre = document.createElement("pre");
  pre.id = "check";
  pre.textContent = JSON.stringify(found);
  document.body.appendChild(pre);
});
</script></body>"""


def browser_dom(page: Path, tmp: Path) -> str:
    """The DOM of ``page`` after loading in headless Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is missing: `apt-get install chromium` (.ci/run installs it)")
    flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
    flags += " --disable-background-networking --disable-component-update --disable-sync"
    cmd = [chromium, *flags.split(), f"--user-data-dir={tmp / 'profile'}"]
    cmd += ["--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def test_progress_keeps_its_last_state():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="step:  10%|#  | 1/10\r"),
        nbformat.v4.new_output("stream", name="stderr", text="step: 100%|###| 10/10\n"),
        nbformat.v4.new_output(
            "display_data",
            data={
                "application/vnd.jupyter.widget-view+json": {"model_id": "x"},
                "text/plain": "step: 100%",
            },
        ),
        nbformat.v4.new_output("stream", name="stdout", text="loss 0.5\n"),
    ]
    nb.cells = [cell]
    outs = report.collapse_progress(nb).cells[0].outputs
    assert [o.get("text") for o in outs] == ["step: 100%|###| 10/10\n", None, "loss 0.5\n"]
    assert outs[1].data == {"text/plain": "step: 100%"}
    assert len(nb.cells[0].outputs) == 4  # the original is left as it was


@pytest.mark.slow
def test_report_page_loads_in_a_browser_with_every_image_and_link(demo_root, tmp_path):
    assert cli.main(["report", "demo"]) == 1  # nothing reproduced yet: a named error
    assert cli.main(["reproduce", "demo"]) == 0
    assert cli.main(["report", "demo"]) == 0
    page = demo_root / "results" / "demo.html"
    probe = page.with_name(".probe.html")
    probe.write_text(page.read_text().replace("</body>", CHECK))
    dom = browser_dom(probe, tmp_path)
    found = json.loads(html.unescape(re.search(r'<pre id="check">(.*?)</pre>', dom, re.S)[1]))
    assert found["tables"] == 2  # the rows, the runs
    assert found["images"] and all(w > 0 for w in found["images"])
    targets = [Path(unquote(urlparse(link).path)) for link in found["links"]]
    assert len(targets) == 4 and all(t.is_file() for t in targets)  # 2 rows x 2 steps
    assert "{'size': 3}" in targets[0].read_text()  # the executed notebook's output, rendered
    assert "scaling raises the score" in dom and "plain" in dom
