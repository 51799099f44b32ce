"""The ``evaluation`` asset group: compare two classifier configurations and score golden sets.

Not partitioned: an evaluation is run on demand (prompt edit, model change, new batching strategy),
on a fixed sample, against the endpoint pool of the deployment; the report lands next to the lake.
"""

from contextlib import ExitStack
from pathlib import Path

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from semtel_dagster.core.evaluation.experiment import GOLDEN_DESCRIPTIONS, evaluate, load_golden, parse_configs, sample_for
from semtel_dagster.core.evaluation.report import write_report
from semtel_dagster.resources import EndpointPoolResource
from semtel_dagster.resources.endpoint_pool import SimulatedPools


class EvaluationConfig(Config):
    a: str = "name=single,strategy=single"
    b: list[str] = Field(default_factory=lambda: ["name=multi_conversation,strategy=multi_conversation"])
    sample: str = "generated"  # or "real": conversations from data_dir, without labels
    n: int = 120
    max_chars: int | None = None
    seed: int = 7
    golden: str = "mt_bench,clinc150"
    golden_n: int = 200
    data_dir: str = "../shared/data"
    out_dir: str = ".semtel/eval"


@asset(group_name="evaluation")
def classifier_evaluation(context: AssetExecutionContext, config: EvaluationConfig, endpoint_pool: EndpointPoolResource):
    """Agreement, label shift, parse failures and costs of each configuration B against A; accuracy and macro-F1 on golden sets."""
    with ExitStack() as stack:
        pools = SimulatedPools(stack)
        configured = [
            (run, pools.for_choice(choice, endpoint_pool.endpoints)) for run, choice in parse_configs(config.a, config.b)
        ]
        sample, description = sample_for(
            config.sample, config.n, config.seed, sorted(configured[0][0].load()), Path(config.data_dir), config.max_chars
        )
        golden = load_golden(config.golden, Path(config.data_dir), config.golden_n, config.seed, context.log.warning)
        result = evaluate(configured[0], configured[1:], sample, description, config.seed, golden, GOLDEN_DESCRIPTIONS)
    report = write_report(Path(config.out_dir), result)
    return MaterializeResult(
        metadata={
            "report": MetadataValue.path(str(report.resolve())),
            "agreement": MetadataValue.json(
                {
                    f"{b_name}/{name}": {
                        "kappa": round(c["cohen_kappa"], 4),
                        "raw": round(c["raw_agreement"], 4),
                        "js": round(c["js_divergence"], 4),
                    }
                    for b_name, comparison in result["comparison"].items()
                    for name, c in comparison.items()
                }
            ),
            "costs": MetadataValue.json({run["name"]: run["costs"] for run in result["runs"]}),
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
