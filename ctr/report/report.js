// Filters cluster cards by label, stop reason and free text; expands or collapses them all.
(function () {
  "use strict";
  var cards = Array.prototype.slice.call(document.querySelectorAll("details.card"));
  var links = Array.prototype.slice.call(document.querySelectorAll("nav.toc li[data-cluster]"));
  var label = document.getElementById("filter-label");
  var stop = document.getElementById("filter-stop");
  var text = document.getElementById("filter-text");
  var shown = document.getElementById("shown-count");

  function matches(el) {
    var q = text && text.value ? text.value.toLowerCase() : "";
    return (!label || !label.value || el.getAttribute("data-label") === label.value) &&
      (!stop || !stop.value || el.getAttribute("data-stop") === stop.value) &&
      (!q || el.getAttribute("data-search").indexOf(q) !== -1);
  }

  function apply() {
    var n = 0;
    cards.forEach(function (card) {
      var ok = matches(card);
      card.classList.toggle("hidden", !ok);
      if (ok) { n += 1; }
    });
    links.forEach(function (li) { li.classList.toggle("hidden", !matches(li)); });
    if (shown) { shown.textContent = n + " of " + cards.length + " clusters shown"; }
  }

  [label, stop, text].forEach(function (el) {
    if (el) { el.addEventListener("input", apply); el.addEventListener("change", apply); }
  });
  function setAll(open) { cards.forEach(function (card) { if (!card.classList.contains("hidden")) { card.open = open; } }); }
  var expand = document.getElementById("expand-all");
  var collapse = document.getElementById("collapse-all");
  if (expand) { expand.addEventListener("click", function () { setAll(true); }); }
  if (collapse) { collapse.addEventListener("click", function () { setAll(false); }); }
  // A link to a card opens it.
  links.forEach(function (li) {
    li.addEventListener("click", function () {
      var card = document.getElementById("cluster-" + li.getAttribute("data-cluster"));
      if (card) { card.open = true; }
    });
  });
  apply();
})();
