-- Evaluation tables written by the evaluation_metrics asset (tidy: protocol, group,
-- method, metric, value, ci_low, ci_high, ...) and the recall curves behind its plot.

CREATE OR REPLACE VIEW evaluation_metrics AS
SELECT * FROM read_parquet({{lake}} || '/evaluation/metrics.parquet');

CREATE OR REPLACE VIEW evaluation_recall_curves AS
SELECT * FROM read_parquet({{lake}} || '/evaluation/recall_curves.parquet');

COMMENT ON VIEW evaluation_metrics IS 'The paper''s retrieval protocol on held-out perturbagens, one row per protocol, group, method and metric, with its confidence interval.';
COMMENT ON VIEW evaluation_recall_curves IS 'Recall against rank quantile per protocol and method (the evaluation plot).';
