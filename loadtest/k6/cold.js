// Cold start: VUS (200) clients each pull one manifest at once, spread over
// REPOS (20) distinct repositories the proxy has never seen. The driver counts
// token requests at the upstream's token endpoint: expected = REPOS.
import exec from 'k6/execution';
import { TREND_STATS, int, manifest, repo, summary } from './lib.js';

const REPOS = int('REPOS', 20);

export const options = {
  scenarios: { cold: { executor: 'per-vu-iterations', vus: int('VUS', 200), iterations: 1, maxDuration: '60s' } },
  summaryTrendStats: TREND_STATS,
};

export default function () {
  manifest('GET', repo((exec.vu.idInTest - 1) % REPOS));
}

export const handleSummary = summary;
