/**
 * Prometheus metrics of one service (its own registry, so that two services in one process, or a
 * user's own prom-client metrics, do not collide).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class ServeMetrics {
  readonly registry = new Registry();
  readonly scoreSeconds = new Histogram({
    name: 'reconpatch_score_seconds', help: 'Time to score one image (decode, inference, heatmap), by model',
    labelNames: ['model'], buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [this.registry],
  });
  readonly verdicts = new Counter({
    name: 'reconpatch_verdicts_total', help: 'Verdicts by model and result (ok, anomaly, uncalibrated), and whether borderline',
    labelNames: ['model', 'result', 'borderline'], registers: [this.registry],
  });
  readonly errors = new Counter({
    name: 'reconpatch_errors_total', help: 'Error answers by error code', labelNames: ['code'], registers: [this.registry],
  });
  readonly loaded = new Gauge({
    name: 'reconpatch_model_loaded', help: 'Loaded models: 1 for each model id and the version it serves',
    labelNames: ['model', 'version'], registers: [this.registry],
  });
  readonly updates = new Counter({
    name: 'reconpatch_model_updates_total', help: 'Model updates from labelled images, by model and outcome',
    labelNames: ['model', 'outcome'], registers: [this.registry],
  });

  constructor(defaults: boolean) {
    if (defaults) collectDefaultMetrics({ register: this.registry });
  }

  setLoaded(loaded: { id: string; version: string }[]): void {
    this.loaded.reset();
    for (const l of loaded) this.loaded.set({ model: l.id, version: l.version }, 1);
  }
}
