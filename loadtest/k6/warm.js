// Touches every repository once (not reported): warms upstream tokens and
// connection pools before a timed scenario. Env: REPOS (1000), VUS (16).
import exec from 'k6/execution';
import { TREND_STATS, int, manifest, repo, summary } from './lib.js';

const REPOS = int('REPOS', 1000);

export const options = {
  scenarios: {
    warm: { executor: 'shared-iterations', vus: Math.min(int('VUS', 16), REPOS), iterations: REPOS, maxDuration: '120s' },
  },
  summaryTrendStats: TREND_STATS,
};

export default function () {
  manifest('GET', repo(exec.scenario.iterationInTest % REPOS));
}

export const handleSummary = summary;
