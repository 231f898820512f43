// MathJax 2 set-up for pymdownx.arithmatex (generic mode): it wraps maths in \( \) and \[ \] inside
// .arithmatex elements; only those are typeset. MathJax itself is copied into the site from the
// jupyter-server-mathjax package at build time (docs/hooks.py), so the site renders maths offline.
window.MathJax = {
  tex2jax: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    ignoreClass: ".*",
    processClass: "arithmatex"
  },
  "HTML-CSS": { availableFonts: ["TeX"], imageFont: null },
  showMathMenu: false
};
