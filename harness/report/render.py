"""The report's tables as Markdown, LaTeX and HTML. A table is a plain dict {title, header, rows, notes} (built in
harness/report/tables.py); a row is a list of cells {text, bold, std, sup}. One renderer per format turns cells into
text, and the cell markup is the only thing that differs between formats, so every table (scorecard included) shares
them.
"""
import html


def _tex_escape(text):
    out = text.replace("\\", r"\textbackslash{}")
    for ch in "&%$#_{}":
        out = out.replace(ch, "\\" + ch)
    return out.replace("~", r"\textasciitilde{}").replace("^", r"\textasciicircum{}")


_ESCAPE = {"md": lambda t: t.replace("|", r"\|"), "tex": _tex_escape, "html": html.escape}
_BOLD = {"md": "**{}**", "tex": r"\textbf{{{}}}", "html": "<b>{}</b>"}
_STD = {"md": " ±{}", "tex": r"\scriptsize{{±{}}}", "html": "<small>±{}</small>"}
_SUP = {"md": "<sup>{}</sup>", "tex": r"\textsuperscript{{{}}}", "html": "<sup>{}</sup>"}


def render_cell(c, fmt):
    esc = _ESCAPE[fmt]
    text = esc(c["text"])
    text = _BOLD[fmt].format(text) if c["bold"] else text
    text += _STD[fmt].format(esc(c["std"])) if c["std"] else ""
    return text + (_SUP[fmt].format(esc(c["sup"])) if c["sup"] else "")


def to_markdown(table, level=3):
    lines = ["#" * level + " " + table["title"], ""]
    lines.append("| " + " | ".join(_ESCAPE["md"](h) for h in table["header"]) + " |")
    lines.append("|" + "|".join("---" for _ in table["header"]) + "|")
    lines += ["| " + " | ".join(render_cell(c, "md") for c in row) + " |" for row in table["rows"]]
    return "\n".join(lines + [""] + [f"- {n}" for n in table["notes"]] + [""]) + "\n"


def to_latex(table):
    ncols = len(table["header"])
    lines = [f"% {table['title']}"] + [f"% {n}" for n in table["notes"]]
    columns = table.get("tex_columns") or "l" * min(ncols, 3) + "r" * max(ncols - 3, 0)
    lines += [r"\begin{tabular}{" + columns + "}", r"\toprule"]
    lines.append(" & ".join(_tex_escape(h) for h in table["header"]) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(render_cell(c, "tex") for c in row) + r" \\" for row in table["rows"]]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"


def to_html(table, level=3):
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table["header"])
    body = ["<tr>" + "".join(f"<td>{render_cell(c, 'html')}</td>" for c in row) + "</tr>" for row in table["rows"]]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in table["notes"])
    return (f"<h{level}>{html.escape(table['title'])}</h{level}>\n<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
            + "\n".join(body) + "\n</tbody>\n</table>\n" + (f"<ul>{notes}</ul>\n" if notes else ""))
