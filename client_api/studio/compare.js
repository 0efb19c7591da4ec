// The before/after comparison: a native range input drives it (mouse, touch and keyboard alike).
export function setupCompare({ compare, slider, sideBySide }) {
  const update = () => compare.style.setProperty("--split", `${slider.value}%`);
  slider.addEventListener("input", update);
  sideBySide.addEventListener("change", () => compare.classList.toggle("side-by-side", sideBySide.checked));
  update();
  return { reset() { slider.value = 50; update(); } };
}

// Detected furniture as boxes over the result, in the result image's own pixels.
export function drawDetections(svg, image, detections) {
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${image.naturalWidth || 1} ${image.naturalHeight || 1}`);
  for (const d of detections) {
    const [x1, y1, x2, y2] = d.box;
    const g = document.createElementNS(ns, "g");
    const rect = document.createElementNS(ns, "rect");
    Object.entries({ x: x1, y: y1, width: x2 - x1, height: y2 - y1 }).forEach(([k, v]) => rect.setAttribute(k, v));
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", x1 + 4);
    label.setAttribute("y", y1 + 16);
    label.textContent = `${d.class_name} ${Math.round(d.score * 100)}%`;
    g.append(rect, label);
    if (!d.furniture) g.classList.add("other");
    svg.append(g);
  }
}
