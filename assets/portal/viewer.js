// The zoomable viewer: OpenSeadragon with the class overlay (and, for a model that pools by
// attention, its attention map); the tile sources come in the page's JSON.
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
const opacity = document.getElementById('opacity');

/**
 * An overlay covering the whole image at its own resolution (stretched to the image's width),
 * shown at the slider's opacity while its checkbox is ticked; its tiled image goes to window[name].
 */
function overlay(source, toggle, name) {
  if (!source || !toggle) return;
  const apply = () => {
    if (window[name]) window[name].setOpacity(toggle.checked ? opacity.value / 100 : 0);
  };
  toggle.addEventListener('change', apply);
  opacity.addEventListener('input', apply);
  viewer.addHandler('open', () => {
    viewer.addTiledImage({
      tileSource: source,
      x: 0,
      y: 0,
      width: 1,
      opacity: 0,
      success: (e) => {
        window[name] = e.item;
        apply();
      },
    });
  });
}
overlay(options.overlay, document.getElementById('show-overlay'), 'pathotypeOverlay');
overlay(options.attention, document.getElementById('show-attention'), 'pathotypeAttention');
if (options.waiting) setTimeout(() => location.reload(), 2000);
