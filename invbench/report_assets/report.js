// invbench report: click a column header to sort its table by that column (numbers by value,
// missing values last; click again to reverse). No library, no network.
"use strict";
function sortTable(th) {
  const table = th.closest("table");
  const body = table.tBodies[0];
  const col = Number(th.dataset.col);
  const ascending = th.getAttribute("aria-sort") !== "ascending";
  for (const other of table.querySelectorAll("th.sortable")) other.removeAttribute("aria-sort");
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const key = (row) => {
    const cell = row.cells[col];
    const v = cell.dataset.value;
    if (v === undefined) return cell.textContent.trim().toLowerCase();
    return v === "" ? null : Number(v);
  };
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === null || y === null) return (x === null) - (y === null);
    const c = x < y ? -1 : x > y ? 1 : 0;
    return ascending ? c : -c;
  });
  for (const row of rows) body.appendChild(row);
}
document.addEventListener("DOMContentLoaded", () => {
  for (const th of document.querySelectorAll("th.sortable")) {
    th.addEventListener("click", () => sortTable(th));
  }
});
