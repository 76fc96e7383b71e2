// The eval report's only script (cifarzoo/templates/report.js; its sha256 is in the page's CSP).
// It sorts the per-class table and shows a confusion-matrix cell's images. Names are set with textContent,
// never as HTML, so a class or file name holding markup stays text.
(function () {
  "use strict";

  var table = document.getElementById("per-class");
  if (table) {
    table.querySelectorAll("th button[data-col]").forEach(function (button) {
      button.addEventListener("click", function () {
        var col = Number(button.dataset.col);
        var numeric = button.dataset.type === "number";
        var header = button.parentElement;
        var ascending = header.getAttribute("aria-sort") !== "ascending";
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].dataset.value;
          var y = b.cells[col].dataset.value;
          var order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
        table.querySelectorAll("th").forEach(function (th) { th.removeAttribute("aria-sort"); });
        header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      });
    });
  }

  var dataNode = document.getElementById("cell-data");
  var panel = document.getElementById("cell-images");
  if (!dataNode || !panel) {
    return;
  }
  var data = JSON.parse(dataNode.textContent);

  function element(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined) { node.textContent = text; }
    if (className) { node.className = className; }
    return node;
  }

  function showCell(td) {
    document.querySelectorAll("#confusion td.selected").forEach(function (c) { c.classList.remove("selected"); });
    td.classList.add("selected");
    var parts = td.dataset.key.split(",");
    var trueName = data.classes[Number(parts[0])];
    var predName = data.classes[Number(parts[1])];
    var items = data.cells[td.dataset.key] || [];
    var count = Number(td.dataset.count);
    var title = "true " + trueName + ", predicted " + predName + ": " + count + (count === 1 ? " image" : " images");
    if (items.length < count) { title += " (" + items.length + " shown)"; }
    var thumbs = element("div", undefined, "thumbs");
    items.forEach(function (item) {
      var figure = element("figure");
      var img = element("img");
      img.src = item.src;
      img.alt = item.id;
      img.width = 64;
      img.height = 64;
      figure.appendChild(img);
      var confidence = item.conf === null ? "?" : item.conf.toFixed(2);
      figure.appendChild(element("figcaption", item.id + " (" + confidence + ")"));
      thumbs.appendChild(figure);
    });
    panel.replaceChildren(element("h3", title), thumbs);
  }

  document.querySelectorAll("#confusion td.cell[data-key]").forEach(function (td) {
    td.addEventListener("click", function () { showCell(td); });
    td.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        showCell(td);
      }
    });
  });
})();
