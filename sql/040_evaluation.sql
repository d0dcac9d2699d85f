-- Evaluation tables written by the evaluation_metrics asset (tidy: protocol, group,
-- method, metric, value, ci_low, ci_high, ...) and the recall curves behind its plot.

CREATE OR REPLACE VIEW evaluation_metrics AS
SELECT * FROM read_parquet({{lake}} || '/evaluation/metrics.parquet');

CREATE OR REPLACE VIEW evaluation_recall_curves AS
SELECT * FROM read_parquet({{lake}} || '/evaluation/recall_curves.parquet');
