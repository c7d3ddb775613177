"""The report's tables as Markdown, LaTeX and HTML, and index.html, the page that holds them all.

A table is a plain dict {name, title, header, rows, notes} (built in harness/report/tables.py and layouts.py); a row is
a list of cells {text, bold, std, sup} and optionally `suffix` (text after the rest: Table 1's "(+0.9%)"). One
renderer per format turns cells into text, and the cell markup is the only thing that differs between formats, so
every table (scorecard included) shares them. Reports are shared, so an absolute path in a cell or note (a record's
output_dir) is shown by its last three parts ("…/multirun/sweep/run-1"); runs.csv keeps it whole.
"""
import html
import re
from pathlib import Path, PurePosixPath

STYLESHEET = Path(__file__).with_name("report.css")
WIDE = 8            # HTML tables with more columns than this get the small-font style
ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/-])(?:/[^\s/|]+){2,}/?")
NUMBER = re.compile(r"[+-]?[\d,]*\.?\d+(?:[KM%]|e[+-]?\d+)?")
# Characters pdflatex cannot take from UTF-8 text as they are (±, ×, · and dashes it can).
_TEX_SYMBOLS = {"≥": r"$\geq$", "≤": r"$\leq$", "Θ": r"$\Theta$", "−": r"$-$", "|": r"\textbar{}",
                "…": r"\dots{}",
                # the analysis tables' (harness/analyze): φ, ‖ΔW‖_F, σ₁, UᵀWVᵀ, Σ σ_k², ℝ^d …
                "φ": r"$\varphi$", "‖": r"$\|$", "Δ": r"$\Delta$", "σ": r"$\sigma$", "Σ": r"$\Sigma$",
                "α": r"$\alpha$", "ᵀ": r"$^\top$", "⊤": r"$^\top$", "₀": r"$_0$", "₁": r"$_1$", "₂": r"$_2$",
                "²": r"$^2$", "≈": r"$\approx$", "∈": r"$\in$", "ℝ": r"\textbf{R}", "√": r"$\surd$"}


def short_paths(text):
    """Every absolute path in `text` by its last three parts: '/work/x/multirun/s/run-1' → '…/multirun/s/run-1'."""
    return ABSOLUTE_PATH.sub(lambda m: "…/" + "/".join(m.group(0).strip("/").split("/")[-3:]), text)


def _tex_escape(text):
    out = text.replace("\\", r"\textbackslash{}")
    for ch in "&%$#_{}":
        out = out.replace(ch, "\\" + ch)
    out = out.replace("~", r"\textasciitilde{}").replace("^", r"\textasciicircum{}")
    return "".join(_TEX_SYMBOLS.get(ch, ch) for ch in out)


_ESCAPE = {"md": lambda t: t.replace("|", r"\|"), "tex": _tex_escape, "html": html.escape}
_BOLD = {"md": "**{}**", "tex": r"\textbf{{{}}}", "html": "<b>{}</b>"}
_STD = {"md": " ±{}", "tex": r"{{\scriptsize ±{}}}", "html": "<small>±{}</small>"}
_SUP = {"md": "<sup>{}</sup>", "tex": r"\textsuperscript{{{}}}", "html": "<sup>{}</sup>"}


def _text(text, fmt):
    return _ESCAPE[fmt](short_paths(str(text)))


def render_cell(c, fmt):
    text = _text(c["text"], fmt)
    text = _BOLD[fmt].format(text) if c["bold"] else text
    text += _STD[fmt].format(_text(c["std"], fmt)) if c["std"] else ""
    text += _SUP[fmt].format(_text(c["sup"], fmt)) if c["sup"] else ""
    return text + (" " + _text(c["suffix"], fmt) if c.get("suffix") else "")


def to_markdown(table, level=3):
    lines = ["#" * level + " " + table["title"], ""]
    lines.append("| " + " | ".join(_ESCAPE["md"](h) for h in table["header"]) + " |")
    lines.append("|" + "|".join("---" for _ in table["header"]) + "|")
    lines += ["| " + " | ".join(render_cell(c, "md") for c in row) + " |" for row in table["rows"]]
    return "\n".join(lines + [""] + [f"- {_text(n, 'md')}" for n in table["notes"]] + [""]) + "\n"


def to_latex(table):
    """A complete `table` float (booktabs) to paste into a paper: \\caption{title}, \\label{tab:<name>}, the tabular,
    and the notes under it as a footnote-size paragraph."""
    ncols = len(table["header"])
    columns = table.get("tex_columns") or "l" * min(ncols, 3) + "r" * max(ncols - 3, 0)
    lines = [r"% needs \usepackage{booktabs}", r"\begin{table}[htbp]", r"\centering", r"\small",
             r"\caption{" + _text(table["title"], "tex") + "}", r"\label{tab:" + table["name"] + "}",
             r"\begin{tabular}{" + columns + "}", r"\toprule",
             " & ".join(_text(h, "tex") for h in table["header"]) + r" \\", r"\midrule"]
    lines += [" & ".join(render_cell(c, "tex") for c in row) + r" \\" for row in table["rows"]]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table["notes"]:
        lines += [r"\par\smallskip", r"\begin{minipage}{\linewidth}\footnotesize\raggedright"]
        lines += [_text(n, "tex") + r"\par" for n in table["notes"]]
        lines.append(r"\end{minipage}")
    return "\n".join(lines + [r"\end{table}"]) + "\n"


def _td(c):
    numeric = c["std"] or NUMBER.fullmatch(c["text"].strip())
    return ('<td class="num">' if numeric else "<td>") + render_cell(c, "html") + "</td>"


def to_html(table, level=None):
    """A <section id=name>: the table with its title as <caption>, in a wrapper that scrolls sideways (class `wide`,
    a smaller font, past WIDE columns), then its notes. `level` is unused (the title is the caption, no heading);
    it stays for callers of the former signature."""
    wide = " wide" if len(table["header"]) > WIDE else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table["header"])
    body = ["<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in table["rows"]]
    notes = "".join(f"<li>{_text(n, 'html')}</li>" for n in table["notes"])
    return (f'<section class="report-table" id="{html.escape(table["name"])}">\n<div class="scroll">'
            f'<table class="report{wide}">\n<caption>{_text(table["title"], "html")}</caption>\n'
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table></div>\n"
            + (f'<ul class="notes">{notes}</ul>\n' if notes else "") + "</section>\n")


def _figures(plots):
    """<figure>s for the PNGs among `plots` (paths relative to the page), each linking its PDF when there is one."""
    out = []
    for path in plots:
        if PurePosixPath(path).is_absolute() or re.match(r"[A-Za-z]:[\\/]", path):
            raise ValueError(f"plot path {path!r} is absolute: index.html must name its plots relative to itself")
        stem, ext = path.rsplit(".", 1) if "." in path else (path, "")
        if ext != "png":
            continue
        pdf = f' · <a href="{html.escape(stem)}.pdf">PDF</a>' if f"{stem}.pdf" in plots else ""
        name = html.escape(PurePosixPath(stem).name)
        out.append(f'<figure><img src="{html.escape(path)}" alt="{name}" loading="lazy">'
                   f"<figcaption>{name.replace('_', ' ')}{pdf}</figcaption></figure>")
    return out


def html_page(title, intro, tables, plots, skipped=()):
    """index.html standing alone: report.css inline, the title, `intro` (a paragraph or a list of them: the run
    counts), a contents list, every table with its notes, and the plots, each PNG embedded by its path relative to
    the page (plots/…png, as plots.make_plots returns them) with its PDF linked; `skipped`: plots not made, why."""
    paragraphs = [intro] if isinstance(intro, str) else list(intro)
    contents = [f'<li><a href="#{html.escape(t["name"])}">{html.escape(t["title"])}</a></li>' for t in tables]
    figures = _figures(plots)
    contents += ['<li><a href="#plots">Plots</a></li>'] if figures or skipped else []
    parts = [f"<h1>{html.escape(title)}</h1>"] + [f"<p>{_text(p, 'html')}</p>" for p in paragraphs]
    parts += ['<nav><ol class="contents">' + "".join(contents) + "</ol></nav>"] + [to_html(t) for t in tables]
    if figures or skipped:
        parts += ['<section id="plots"><h2>Plots</h2>'] + figures
        parts += ['<ul class="notes">' + "".join(f"<li>skipped: {_text(s, 'html')}</li>" for s in skipped)
                  + "</ul>"] if skipped else []
        parts.append("</section>")
    style = STYLESHEET.read_text(encoding="utf-8")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>\n{style}</style>\n</head>\n<body><main>\n"
            + "\n".join(parts) + "\n</main></body></html>\n")
