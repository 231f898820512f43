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
  // the bundled MathJax carries the STIX-Web fonts only (no TeX fonts): use them, never a font from a CDN
  "HTML-CSS": { availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null },
  SVG: { font: "STIX-Web" },
  showMathMenu: false
};
