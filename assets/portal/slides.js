// The slides page: a pathologist's slide, streamed into the slide queue, then its viewer.
const form = document.getElementById('slide-form');
if (form) {
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const file = document.getElementById('slide-file').files[0];
    if (!file) return;
    const mpp = document.getElementById('slide-mpp').value.trim();
    window.pathotypeSend({
      url: '/api/v1/slides' + (mpp ? '?slideMpp=' + encodeURIComponent(mpp) : ''),
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
