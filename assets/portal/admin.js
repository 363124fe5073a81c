// The admins' and the review queue's forms: each sends its fields as JSON to the REST API named
// by data-api (data-method, default POST) with the page's CSRF token, then reloads the page.
const csrf = document.querySelector('meta[name="csrf-token"]')?.getAttribute('content');

for (const form of document.querySelectorAll('form[data-api]')) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const status = form.querySelector('.form-status');
    const body = {};
    for (const [name, value] of new FormData(form)) {
      const text = String(value).trim();
      if (text) body[name] = /^\d+$/.test(text) ? Number(text) : text;
    }
    if (status) {
      status.className = 'form-status';
      status.textContent = form.dataset.working ?? 'Working…';
    }
    const headers = { 'content-type': 'application/json' };
    if (csrf) headers['x-csrf-token'] = csrf;
    const response = await window.fetch(form.dataset.api, {
      method: form.dataset.method ?? 'POST',
      headers,
      body: JSON.stringify(body),
    });
    if (response.ok) {
      window.location.reload();
      return;
    }
    const answer = await response.json().catch(() => ({}));
    if (status) {
      status.className = 'form-status error';
      status.textContent = answer.error?.message ?? 'Not done (' + response.status + ')';
    }
  });
}
