// The review form: sends the diagnosis as JSON to the REST API with the page's CSRF token.
const form = document.getElementById('review-form');
const status = document.getElementById('review-status');
const csrf = document.querySelector('meta[name="csrf-token"]')?.getAttribute('content');

form?.addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const body = {};
  for (const name of ['label', 'other', 'patient', 'comment']) {
    const value = String(data.get(name) ?? '').trim();
    if (value) body[name] = value;
  }
  status.className = '';
  status.textContent = 'Recording…';
  const headers = { 'content-type': 'application/json' };
  if (csrf) headers['x-csrf-token'] = csrf;
  const response = await window.fetch(form.dataset.action, {
    method: 'POST',
    headers,
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (response.status === 201) {
    status.textContent =
      'Recorded: ' + answer.label + (answer.patient ? ' (patient ' + answer.patient + ')' : '');
    // The page shows the case's reviews as this reader may now see them (a second reader: both).
    window.location.reload();
  } else {
    status.className = 'error';
    status.textContent = answer.error?.message ?? 'The review was not recorded (' + response.status + ')';
  }
});
