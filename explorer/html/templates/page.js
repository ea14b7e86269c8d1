"use strict";
// Progressive enhancement: without JavaScript every table reads in report order and folded
// parts open by hand. With it, a header button sorts its table by that column (on the exact
// values in data-value; missing values last), and printing opens every folded part.
(function () {
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
  });
  window.addEventListener("afterprint", function () {
    document.querySelectorAll("details[data-print-opened]").forEach(function (details) {
      details.open = false;
      details.removeAttribute("data-print-opened");
    });
  });
})();
