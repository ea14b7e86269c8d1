"use strict";
// Progressive enhancement: without JavaScript every table reads in report order and folded
// parts open by hand. With it, a header button sorts its table by that column (on the exact
// values in data-value; missing values last), a long table (data-page-size) shows a page of
// rows at a time with buttons under it, and printing opens every folded part and every row.
(function () {
  var pagers = [];  // a function per paged table: show its first page (after a sort)
  function pageButton(text, action) {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = text;
    button.addEventListener("click", action);
    return button;
  }
  function pager(table) {
    var size = parseInt(table.getAttribute("data-page-size"), 10), page = 0, all = false;
    var where = document.createElement("span");
    var previous = pageButton("\u2039 previous", function () { page -= 1; show(); });
    var next = pageButton("next \u203A", function () { page += 1; show(); });
    var every = pageButton("", function () { all = !all; page = 0; show(); });
    function show() {
      var rows = table.tBodies[0].rows, pages = Math.ceil(rows.length / size);
      page = Math.max(0, Math.min(page, pages - 1));
      Array.prototype.forEach.call(rows, function (row, i) {
        row.hidden = !all && Math.floor(i / size) !== page;
      });
      where.textContent = all ? "all " + rows.length + " rows" : "rows " + (page * size + 1) +
        "\u2013" + Math.min(rows.length, (page + 1) * size) + " of " + rows.length;
      previous.disabled = all || page === 0;
      next.disabled = all || page === pages - 1;
      every.textContent = all ? size + " rows at a time" : "show all " + rows.length;
    }
    var nav = document.createElement("nav");
    nav.className = "pager";
    nav.setAttribute("aria-label", "pages of the table" + (table.id ? " " + table.id : ""));
    [where, previous, next, every].forEach(function (part) { nav.appendChild(part); });
    var box = table.parentNode.classList.contains("scroll") ? table.parentNode : table;
    box.parentNode.insertBefore(nav, box.nextSibling);
    show();
    pagers.push({table: table, first: function () { page = 0; show(); }});
  }
  document.querySelectorAll("table[data-page-size]").forEach(pager);
  function key(cell) {
    var raw = cell.getAttribute("data-value");
    if (raw === null) return cell.textContent.trim();
    var value;
    try { value = JSON.parse(raw); } catch (e) { return raw; }
    return Array.isArray(value) ? value[0] : value;  // an interval sorts by its lower end
  }
  function rank(value) {
    if (value === null || value === undefined || value === "") return 2;
    return typeof value === "number" ? 0 : 1;
  }
  function compare(a, b) {
    var ra = rank(a), rb = rank(b);
    if (ra !== rb) return ra - rb;
    if (ra === 0) return a - b;
    return String(a).localeCompare(String(b), undefined, {numeric: true});
  }
  function sortBy(table, column, header) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (x, y) {
      var a = key(x.cells[column]), b = key(y.cells[column]);
      var order = compare(a, b);
      return ascending || rank(a) === 2 || rank(b) === 2 ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    table.classList.add("sorted");
    pagers.forEach(function (p) { if (p.table === table) p.first(); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
      var button = document.createElement("button");
      button.type = "button";
      while (header.firstChild) button.appendChild(header.firstChild);
      header.appendChild(button);
      button.addEventListener("click", function () { sortBy(table, column, header); });
    });
  });
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details:not([open])").forEach(function (details) {
      details.open = true;
      details.setAttribute("data-print-opened", "");
    });
    document.querySelectorAll("table[data-page-size] tr[hidden]").forEach(function (row) {
      row.hidden = false;
      row.setAttribute("data-print-shown", "");
    });
  });
  window.addEventListener("afterprint", function () {
    document.querySelectorAll("details[data-print-opened]").forEach(function (details) {
      details.open = false;
      details.removeAttribute("data-print-opened");
    });
    document.querySelectorAll("tr[data-print-shown]").forEach(function (row) {
      row.hidden = true;
      row.removeAttribute("data-print-shown");
    });
  });
})();
