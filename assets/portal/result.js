// The result page: the patch heatmap over the image, shown or hidden.
const toggle = document.getElementById('toggle');
const overlay = document.getElementById('overlay');
toggle.addEventListener('change', () => {
  overlay.hidden = !toggle.checked;
});

// A model that pools by attention: its map of each patch's weight, shown or hidden.
const attentionToggle = document.getElementById('toggle-attention');
const attention = document.getElementById('attention');
if (attentionToggle && attention) {
  attentionToggle.addEventListener('change', () => {
    // An SVG element has no `hidden` property: its display is switched instead.
    attention.style.display = attentionToggle.checked ? '' : 'none';
  });
}
