// A CI fleet pulling images: each iteration resolves a tag (HEAD), fetches the
// manifest, the config blob and the layer blob of one of REPOS (50) repositories.
// Env: VUS (32), DURATION (10s), CONFIG_DIGEST, LAYER_DIGEST.
import { DURATION, TREND_STATS, blob, int, manifest, repo, summary } from './lib.js';

const REPOS = int('REPOS', 50);

export const options = {
  scenarios: { ci: { executor: 'constant-vus', vus: int('VUS', 32), duration: DURATION } },
  summaryTrendStats: TREND_STATS,
};

export default function () {
  const r = repo(Math.floor(Math.random() * REPOS));
  manifest('HEAD', r);
  manifest('GET', r);
  blob(r, __ENV.CONFIG_DIGEST);
  blob(r, __ENV.LAYER_DIGEST);
}

export const handleSummary = summary;
