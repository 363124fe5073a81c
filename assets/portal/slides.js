// The slides page: a pathologist's slide, streamed into the slide queue, then its viewer.
const form = document.getElementById('slide-form');
if (form) {
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const file = document.getElementById('slide-file').files[0];
    if (!file) return;
    const query = new URLSearchParams();
    const mpp = document.getElementById('slide-mpp').value.trim();
    if (mpp) query.set('slideMpp', mpp);
    // The model chosen, when the server offers a choice.
    const model = document.getElementById('model');
    if (model) query.set('model', model.value);
    const text = query.toString();
    window.pathotypeSend({
      url: '/api/v1/slides' + (text ? '?' + text : ''),
      field: 'slide',
      file,
      bar: document.getElementById('slide-progress'),
      status: document.getElementById('slide-status'),
      expect: 202,
      afterUpload: 'Queued; opening the slide…',
      done: (body) => {
        location.href = '/slides/' + encodeURIComponent(body.id);
      },
    });
  });
}
