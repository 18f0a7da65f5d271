// Shared helpers of the k6 scenarios. Every script is parameterised by env:
//   BASE_URL  http://127.0.0.1:PORT of the path under test (direct, nginx, oci-connector)
//   PREFIX    path between /v2/ and the repository ('' or 'namespaces/bench/connectors/fast/')
//   AUTH      Authorization header to send ('' when the proxy injects credentials)
//   REPO_PREFIX  repositories are REPO_PREFIX + index (default 'bench/repo-')
//   SUMMARY_FILE where handleSummary writes the JSON the driver reads
import http from 'k6/http';
import { Counter } from 'k6/metrics';

export const BASE = __ENV.BASE_URL;
export const PREFIX = __ENV.PREFIX || '';
export const AUTH = __ENV.AUTH || '';
export const REPO_PREFIX = __ENV.REPO_PREFIX || 'bench/repo-';
export const DURATION = __ENV.DURATION || '10s';
export const MANIFEST_DIGEST = __ENV.MANIFEST_DIGEST || '';
export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

// Unexpected status or transport error: the table's "errors" column.
export const errors = new Counter('errors');

export const TREND_STATS = ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max', 'count'];

export function int(name, dflt) {
  const v = __ENV[name];
  return v === undefined || v === '' ? dflt : parseInt(v, 10);
}

export function repo(i) {
  return `${REPO_PREFIX}${i}`;
}

export function url(repository, rest) {
  return `${BASE}/v2/${PREFIX}${repository}/${rest}`;
}

export function params(extraHeaders, responseType) {
  const headers = Object.assign({}, extraHeaders || {});
  if (AUTH) headers['Authorization'] = AUTH;
  return { headers: headers, responseType: responseType || 'none', timeout: '600s' };
}

// Counts anything but `want` (and any transport error) as an error.
export function expect(res, want, what) {
  if (res.status !== want || res.error_code) {
    errors.add(1);
    if (__ENV.DEBUG) console.warn(`${what}: status=${res.status} error=${res.error}`);
    return false;
  }
  return true;
}

// Manifest HEAD or GET; checks the digest header when MANIFEST_DIGEST is set.
export function manifest(method, repository) {
  const res = http.request(method, url(repository, 'manifests/latest'), null,
    params({ Accept: MANIFEST_ACCEPT }, 'none'));
  if (expect(res, 200, `${method} manifest ${repository}`) && MANIFEST_DIGEST &&
      res.headers['Docker-Content-Digest'] !== MANIFEST_DIGEST) {
    errors.add(1);
  }
  return res;
}

export function blob(repository, digest) {
  const res = http.get(url(repository, `blobs/${digest}`), params({}, 'none'));
  expect(res, 200, `GET blob ${repository}`);
  return res;
}

// The driver reads this file; nothing is printed.
export function summary(data) {
  const out = {};
  out[__ENV.SUMMARY_FILE || 'summary.json'] = JSON.stringify({
    durationMs: data.state.testRunDurationMs,
    metrics: data.metrics,
  });
  out.stdout = '';
  return out;
}
