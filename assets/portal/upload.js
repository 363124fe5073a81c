// The upload page: drop or choose an image, send it with the page's CSRF token, follow to its result.
const drop = document.getElementById('drop');
const input = document.getElementById('file');
const status = document.getElementById('status');
const bar = document.getElementById('progress');
const csrf = document.querySelector('meta[name="csrf-token"]')?.getAttribute('content');

function send(file) {
  if (!file) return;
  const form = new FormData();
  form.append('image', file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open('POST', '/portal/predictions');
  if (csrf) xhr.setRequestHeader('x-csrf-token', csrf);
  bar.hidden = false;
  bar.value = 0;
  status.className = '';
  status.textContent = 'Uploading ' + file.name + '…';
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) bar.value = (e.loaded / e.total) * 100;
  };
  xhr.upload.onload = () => {
    bar.removeAttribute('value');
    status.textContent = 'Classifying ' + file.name + '…';
  };
  xhr.onload = () => {
    let body = {};
    try {
      body = JSON.parse(xhr.responseText);
    } catch {
      // not JSON: the status says what happened
    }
    if (xhr.status === 201 && body.id) {
      status.textContent = 'Done.';
      location.href = '/cases/' + encodeURIComponent(body.id);
      return;
    }
    bar.hidden = true;
    status.className = 'error';
    status.textContent = (body.error && body.error.message) || 'Upload failed (HTTP ' + xhr.status + ')';
  };
  xhr.onerror = () => {
    bar.hidden = true;
    status.className = 'error';
    status.textContent = 'The server could not be reached.';
  };
  xhr.send(form);
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
