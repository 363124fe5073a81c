// Streams one file to the server with the page's CSRF token, showing its progress in `bar` and
// `status`; calls done(body) on the expected status, else shows the server's error.
window.pathotypeSend = function send(options) {
  const { url, field, file, bar, status, expect, done } = options;
  const csrf = document.querySelector('meta[name="csrf-token"]')?.getAttribute('content');
  const form = new FormData();
  form.append(field, file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open('POST', url);
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
    status.textContent = options.afterUpload || 'Processing ' + file.name + '…';
  };
  xhr.onload = () => {
    let body = {};
    try {
      body = JSON.parse(xhr.responseText);
    } catch {
      // not JSON: the status says what happened
    }
    if (xhr.status === expect && body.id) {
      status.textContent = 'Done.';
      done(body);
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
};
