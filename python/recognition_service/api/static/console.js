// Live pages (main[data-live]) fetch themselves every few seconds and swap in the new content,
// unless the user is typing in a form, so a refresh never eats a half-filled review.
(function () {
  const main = document.querySelector("main[data-live]");
  if (!main) return;
  const every = Number(main.dataset.live) * 1000;
  async function refresh() {
    const active = document.activeElement;
    if (active && active.closest("form") && active !== document.body) return;
    try {
      const response = await fetch(location.href, {credentials: "same-origin", headers: {"X-Console-Refresh": "1"}});
      if (!response.ok || response.redirected) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.querySelector("main");
      if (fresh) main.innerHTML = fresh.innerHTML;
    } catch (e) { /* offline for a moment: try again at the next tick */ }
  }
  setInterval(refresh, every);
})();

// The printable attendance's Print button (no inline script: the Content-Security-Policy refuses it).
document.addEventListener("click", function (event) {
  if (event.target.closest("[data-print]")) window.print();
});
