// The upload page: drop or choose an image (and, optionally, its resolution and the model), follow to its result.
const drop = document.getElementById('drop');
const input = document.getElementById('file');
const options = JSON.parse(document.getElementById('upload-options').textContent);

/** The query: the image's scale (microns per pixel turned into the release's relative scale, as the server does) and the model chosen, when the server offers a choice. */
function uploadQuery() {
  const query = new URLSearchParams();
  const value = Number(document.getElementById('resolution').value);
  if (value > 0) {
    const unit = document.getElementById('resolution-unit').value;
    query.set('scale', String(unit === 'mpp' ? Number((options.originalMpp / value).toPrecision(4)) : value));
  }
  const model = document.getElementById('model');
  if (model) query.set('model', model.value);
  const text = query.toString();
  return text ? '?' + text : '';
}

function send(file) {
  if (!file) return;
  window.pathotypeSend({
    url: '/portal/predictions' + uploadQuery(),
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
