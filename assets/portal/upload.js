// The upload page: drop or choose an image (and, optionally, its resolution), follow to its result.
const drop = document.getElementById('drop');
const input = document.getElementById('file');
const options = JSON.parse(document.getElementById('upload-options').textContent);

/** The query giving the image's scale: microns per pixel turned into the release's relative scale, as the server does. */
function scaleQuery() {
  const value = Number(document.getElementById('resolution').value);
  if (!value || value <= 0) return '';
  const unit = document.getElementById('resolution-unit').value;
  const scale = unit === 'mpp' ? Number((options.originalMpp / value).toPrecision(4)) : value;
  return '?scale=' + encodeURIComponent(scale);
}

function send(file) {
  if (!file) return;
  window.pathotypeSend({
    url: '/portal/predictions' + scaleQuery(),
    field: 'image',
    file,
    bar: document.getElementById('progress'),
    status: document.getElementById('status'),
    expect: 201,
    afterUpload: 'Classifying ' + file.name + '…',
    done: (body) => {
      location.href = '/cases/' + encodeURIComponent(body.id);
    },
  });
}

input.addEventListener('change', () => send(input.files[0]));
for (const type of ['dragenter', 'dragover'])
  drop.addEventListener(type, (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
for (const type of ['dragleave', 'drop'])
  drop.addEventListener(type, (e) => {
    e.preventDefault();
    drop.classList.remove('over');
  });
drop.addEventListener('drop', (e) => send(e.dataTransfer.files[0]));
