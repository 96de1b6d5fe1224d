from PIL import Image

from editrl.report import HtmlReport


def test_report_is_self_contained(tmp_path):
    png = tmp_path / "a.png"
    Image.new("RGB", (4, 4), "red").save(png)
    r = HtmlReport("Demo <run>")
    r.heading("Scores")
    r.table(["model", "acc"], [["ours", 0.8123], ["random", 0.5]])
    r.image(png, "grid")
    r.image(tmp_path / "missing.png")
    out = r.write(tmp_path / "report.html")
    text = out.read_text()
    assert "Demo &lt;run&gt;" in text and "0.812" in text and "data:image/png;base64," in text
    assert "missing image" in text
