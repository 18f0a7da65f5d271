// Manifest HEAD/GET storm across many repositories (tokens already warm).
// Env: VUS (16), DURATION (10s), REPOS (1000).
import { DURATION, TREND_STATS, int, manifest, repo, summary } from './lib.js';

const REPOS = int('REPOS', 1000);

export const options = {
  scenarios: { storm: { executor: 'constant-vus', vus: int('VUS', 16), duration: DURATION } },
  summaryTrendStats: TREND_STATS,
};

export default function () {
  const i = Math.floor(Math.random() * REPOS);
  manifest(__ITER % 2 === 0 ? 'HEAD' : 'GET', repo(i));
}

export const handleSummary = summary;
