// Large blob streams: VUS concurrent downloads, each ITERATIONS times, of the
// blob BLOB_DIGEST. Bodies are discarded by k6 (responseType none), so k6's
// memory stays flat. Env: VUS (1), ITERATIONS (1), BLOB_DIGEST, REPOS (1000).
import { TREND_STATS, blob, int, repo, summary } from './lib.js';

const REPOS = int('REPOS', 1000);

export const options = {
  scenarios: {
    blobs: { executor: 'per-vu-iterations', vus: int('VUS', 1), iterations: int('ITERATIONS', 1), maxDuration: '600s' },
  },
  summaryTrendStats: TREND_STATS,
};

export default function () {
  blob(repo(Math.floor(Math.random() * REPOS)), __ENV.BLOB_DIGEST);
}

export const handleSummary = summary;
