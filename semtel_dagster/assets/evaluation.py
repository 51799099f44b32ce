"""The ``evaluation`` asset group: compare two classifier configurations and score golden sets.

Not partitioned: an evaluation is run on demand (prompt edit, model change, new batching strategy),
on a fixed sample, against the endpoint pool of the deployment; the report lands next to the lake.
"""

from pathlib import Path

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from semtel_dagster.core.evaluation.experiment import (
    GOLDEN_DESCRIPTIONS,
    SAMPLE_WEEK,
    evaluate,
    load_golden,
    parse_config,
    sample_set,
)
from semtel_dagster.core.evaluation.report import write_report
from semtel_dagster.core.llm.endpoints import load_endpoints
from semtel_dagster.resources import EndpointPoolResource


class EvaluationConfig(Config):
    a: str = "name=single,strategy=single"
    b: str = "name=multi_conversation,strategy=multi_conversation"
    n: int = 120
    seed: int = 7
    golden: str = "mt_bench,clinc150"
    golden_n: int = 200
    data_dir: str = "../shared/data"
    out_dir: str = ".semtel/eval"


@asset(group_name="evaluation")
def classifier_evaluation(context: AssetExecutionContext, config: EvaluationConfig, endpoint_pool: EndpointPoolResource):
    """Agreement, label shift, parse failures and costs of configuration B against A; accuracy and macro-F1 on golden sets."""
    config_a, file_a = parse_config(config.a, "A")
    config_b, file_b = parse_config(config.b, "B")
    endpoints_a = load_endpoints(file_a).endpoints if file_a else endpoint_pool.endpoints
    endpoints_b = load_endpoints(file_b).endpoints if file_b else endpoint_pool.endpoints
    sample = sample_set(config.n, config.seed, sorted(config_a.load()))
    golden = load_golden(config.golden, Path(config.data_dir), config.golden_n, config.seed, context.log.warning)
    result = evaluate(
        config_a,
        config_b,
        endpoints_a,
        endpoints_b,
        sample,
        f"seeded generator week {SAMPLE_WEEK}, stratified by true topic",
        config.seed,
        golden,
        GOLDEN_DESCRIPTIONS,
    )
    report = write_report(Path(config.out_dir), result)
    return MaterializeResult(
        metadata={
            "report": MetadataValue.path(str(report.resolve())),
            "agreement": MetadataValue.json(
                {
                    name: {
                        "kappa": round(c["cohen_kappa"], 4),
                        "raw": round(c["raw_agreement"], 4),
                        "js": round(c["js_divergence"], 4),
                    }
                    for name, c in result["comparison"].items()
                }
            ),
            "costs": MetadataValue.json({run["name"]: run["costs"] for run in (result["a"], result["b"])}),
            "golden": MetadataValue.json(
                {
                    f"{s}/{cfg}/{name}": {"accuracy": round(v["accuracy"], 4), "macro_f1": round(v["macro_f1"], 4)}
                    for s, by_cfg in result["golden"].items()
                    for cfg, scores in by_cfg.items()
                    for name, v in scores.items()
                }
            ),
            "report_markdown": MetadataValue.md(report.read_text(encoding="utf-8")),
        }
    )
