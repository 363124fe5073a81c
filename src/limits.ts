/**
 * Every bound, in one place: the work an input may cause (an image, a slide, a Deep Zoom tile, a
 * queue, a connection) and what a client may take (accounts, sessions, request rates, database
 * connections). Each is checked before the work it bounds starts, and each refusal has its own
 * code in the error catalogue. `serve` shows the ones it can change as its defaults.
 */
export const LIMITS = {
  // Images.
  /** Pixels of an image, in its file and again at the model's scale (before decoding either). */
  imagePixels: 100_000_000,
  /** Patches one image may be cut into at the model's scale. */
  imagePatches: 20_000,
  /** A file name as sent; longer ones are refused, not stored. */
  fileNameLength: 255,

  // Whole slides, checked at submission from the slide's header.
  /** Level-0 pixels. */
  slidePixels: 25_000_000_000,
  /** Tiles of the model's grid over the whole slide, before the tissue mask. */
  slideTiles: 500_000,
  /** Pixels the tissue mask's overview reads (from the level nearest to it): a slide without a pyramid costs all of them. */
  slideOverviewPixels: 400_000_000,
  /** Pixels one Deep Zoom tile may read from the slide. */
  deepZoomReadPixels: 16_000_000,
  /** Slides kept open for their viewers' tiles. */
  openSlides: 4,
  /** Deep Zoom tiles kept on disk, in MiB. */
  tileCacheMegabytes: 512,

  // Slide jobs.
  /** Jobs waiting in all, and per user or key; beyond, 503 with Retry-After. */
  slideJobsQueued: 50,
  slideJobsPerClient: 10,
  /** Uploaded slides kept on disk, in GiB. */
  slideDiskGigabytes: 200,
  /** Times a job may be started (a restart or a dead server interrupts it) before it is failed. */
  slideAttempts: 3,

  // Connections.
  /** A client must send its headers within this. */
  headersTimeoutMs: 10_000,
  /** ...and its whole request, body included (a slide upload of gigabytes needs long). */
  requestTimeoutMs: 3_600_000,
  /** An idle keep-alive connection closes after this. */
  keepAliveTimeoutMs: 5_000,
  /** A socket with no traffic at all closes after this. */
  idleSocketMs: 60_000,
  /** Open connections one address may hold. */
  connectionsPerAddress: 32,
  /** A request body must arrive at this many bytes a second at least, over each window below... */
  bodyBytesPerSecond: 1024,
  /** ...or the request ends with 408 and frees what it held. */
  bodyRateWindowMs: 10_000,
  /** Uploads (images, and slides) one user or key may send at once. */
  uploadsPerClient: 4,
  /** Sign-in forms one address may send at once. */
  signInsPerAddress: 4,
  /** Bytes of a request's headers (Node's parser; beyond, 431). */
  headerBytes: 16_384,
  /** Bytes of an HTML form's body (the sign-in and sign-out forms). */
  formBytes: 16_384,
  /** Connections one server opens to a shared PostgreSQL database (node-postgres' pool). */
  databaseConnections: 10,

  // The review loop.
  /** Training images a package's reference keeps (spread over them): their features and measures. */
  referenceImages: 2_000,
  /** Cases the review queue considers, newest first (image predictions and slides each). */
  reviewQueueCases: 5_000,
  /** Reviewed cases a challenger is compared on, newest first. */
  comparisonCases: 1_000,
  /** Model packages one server holds (every version of every name). */
  servedPackages: 8,
  /** Image cases the drift page reads, newest first. */
  driftCases: 20_000,

  // The server's own defaults (serve's flags).
  uploadMegabytes: 50,
  inferenceConcurrency: 1,
  inferenceWaiting: 32,
  slideUploadGigabytes: 20,
} as const;

/** Seconds a closing server gives its requests and jobs before it ends anyway. */
export const SHUTDOWN_GRACE_SECONDS = 10;

/**
 * Accounts: names and passwords, and what failed sign-ins cost (store/sign-in-throttle.ts):
 * counted per name typed, known or not, so the answers never tell the two apart.
 */
export const USER_LIMITS = {
  nameLength: 64,
  passwordMinLength: 10,
  passwordMaxLength: 256,
  /** Failures for a name from one address before that address backs off... */
  failedLogins: 5,
  /** ...for this long after the last one, doubling with each further failure... */
  backoffSeconds: 60,
  /** ...up to this; failures older than it no longer count. */
  lockMinutes: 15,
  /** Failures for a name from all addresses before every attempt at it is delayed... */
  nameFailuresBeforeDelay: 10,
  /** ...by this much more for each further failure... */
  delayStepMs: 500,
  /** ...up to this: the owner still signs in, a little later. */
  maxDelayMs: 5000,
} as const;

/** Portal sessions. */
export const SESSION_LIMITS = {
  /** A session unused this long ends. */
  idleMinutes: 30,
  /** A session ends this long after sign-in, however busy. */
  absoluteHours: 12,
  /** lastSeen is written at most this often. */
  touchSeconds: 60,
} as const;

/** Sign-in attempts one address may make in a minute. */
export const LOGIN_RATE = { max: 30, timeWindow: 60_000 } as const;

/** Requests a key (or an address without one) may make to the REST API in a minute. */
export const API_RATE = { max: 1200, timeWindow: 60_000 } as const;
