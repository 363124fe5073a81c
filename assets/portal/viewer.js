// The zoomable viewer: OpenSeadragon with the class overlay; its tile sources come in the page's JSON.
const options = JSON.parse(document.getElementById('viewer-options').textContent);
const viewer = OpenSeadragon({
  id: 'viewer',
  prefixUrl: '/static/openseadragon/images/',
  tileSources: options.base,
  showNavigator: true,
  maxZoomPixelRatio: 2,
  drawer: 'canvas',
});
window.pathotypeViewer = viewer;
const show = document.getElementById('show-overlay');
const opacity = document.getElementById('opacity');
const apply = () => {
  if (window.pathotypeOverlay) window.pathotypeOverlay.setOpacity(show.checked ? opacity.value / 100 : 0);
};
show.addEventListener('change', apply);
opacity.addEventListener('input', apply);
viewer.addHandler('open', () => {
  if (!options.overlay) return;
  // The overlay covers the whole image at its own resolution: stretched to the image's width.
  viewer.addTiledImage({
    tileSource: options.overlay,
    x: 0,
    y: 0,
    width: 1,
    opacity: 0.6,
    success: (e) => {
      window.pathotypeOverlay = e.item;
      apply();
    },
  });
});
// A model that pools by attention: its map of each tile's weight, over the class overlay, off at first.
const showAttention = document.getElementById('show-attention');
const applyAttention = () => {
  if (window.pathotypeAttention)
    window.pathotypeAttention.setOpacity(showAttention.checked ? opacity.value / 100 : 0);
};
if (showAttention) {
  showAttention.addEventListener('change', applyAttention);
  opacity.addEventListener('input', applyAttention);
  viewer.addHandler('open', () => {
    if (!options.attention) return;
    viewer.addTiledImage({
      tileSource: options.attention,
      x: 0,
      y: 0,
      width: 1,
      opacity: 0,
      success: (e) => {
        window.pathotypeAttention = e.item;
        applyAttention();
      },
    });
  });
}
if (options.waiting) setTimeout(() => location.reload(), 2000);
