// The result page: the patch heatmap over the image, shown or hidden.
const toggle = document.getElementById('toggle');
const overlay = document.getElementById('overlay');
toggle.addEventListener('change', () => {
  overlay.hidden = !toggle.checked;
});
