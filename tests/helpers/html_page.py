"""A page parsed into a small element tree (stdlib html.parser), for tests that read what an
HTML page shows: its tables' exact values, its sections, its scripts and links."""

import json
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Element:
    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children = []  # Elements and strings, in order

    @property
    def classes(self):
        return (self.attrs.get("class") or "").split()

    def text(self):
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag=None, cls=None, **attrs):
        return [e for e in self.iter() if (tag is None or e.tag == tag)
                and (cls is None or cls in e.classes)
                and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def find(self, tag=None, cls=None, **attrs):
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag}> with class {cls} and {attrs}"
        return found[0]

    def value(self):
        """The exact value a cell carries (data-value), as JSON reads it."""
        return json.loads(self.attrs["data-value"])


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Element("#document", {})

    def handle_starttag(self, tag, attrs):
        element = Element(tag, attrs, self.current)
        self.current.children.append(element)
        if tag not in VOID:
            self.current = element

    def handle_startendtag(self, tag, attrs):  # <path/> in inline SVG
        self.current.children.append(Element(tag, attrs, self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(text):
    builder = _Builder()
    builder.feed(text)
    builder.close()
    return builder.root


def table_rows(table):
    """``[(row element, [cells])]`` of a table's body: each row's header cell, then its cells."""
    body = table.find("tbody")
    return [(tr, [c for c in tr.children if isinstance(c, Element) and c.tag in ("th", "td")])
            for tr in body.children if isinstance(tr, Element) and tr.tag == "tr"]


def header(table):
    return [th.text() for th in table.find("thead").find_all("th")]
