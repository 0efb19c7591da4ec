// Picking the photo: drag-and-drop, paste or the picker, checked against the API's limits.
export function formatBytes(n) {
  return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`;
}

// What the browser can tell before uploading; the API checks the content itself (a text file
// renamed .jpg passes here and is refused there, with its own message).
export function checkFile(file, limits) {
  if (!limits.accepted_types.includes(file.type)) {
    return `${file.name} is not a JPEG, PNG or WebP photo.`;
  }
  if (file.size > limits.max_upload_bytes) {
    return `${file.name} is ${formatBytes(file.size)}; the limit is ${formatBytes(limits.max_upload_bytes)}.`;
  }
  return null;
}

export function watchPhotoInputs({ drop, input, onFile }) {
  input.addEventListener("change", () => input.files[0] && onFile(input.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) onFile(file);
  });
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files || [])][0];
    if (file) onFile(file);
  });
}

// The preview, with the photo's pixel size once it has decoded.
export function showPreview({ figure, img, caption }, file, limits) {
  return new Promise((resolve) => {
    URL.revokeObjectURL(img.src);
    img.onload = () => {
      img.hidden = false;
      const { naturalWidth: w, naturalHeight: h } = img;
      const big = w * h > limits.max_pixels;
      caption.textContent = `${file.name}: ${w} × ${h} pixels, ${formatBytes(file.size)}`;
      resolve(big ? `The photo has ${w * h} pixels; the limit is ${limits.max_pixels}.` : null);
    };
    // no broken-image icon: the API says what is wrong with the file once it is sent
    img.onerror = () => {
      img.hidden = true;
      caption.textContent = `${file.name}: not a picture this browser can show`;
      resolve(null);
    };
    img.src = URL.createObjectURL(file);
    figure.hidden = false;
  });
}
