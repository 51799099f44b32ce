import os

# Every test runs offline: no model hub, no tokenizer downloads.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


import pytest


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole test run (small shuffles, no UI), through the engine resource."""
    from semtel_dagster.resources import EngineResource

    engine = EngineResource(
        kind="spark",
        spark_master="local[2]",
        spark_conf={"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false", "spark.driver.memory": "2g"},
    )
    session = engine.for_lake("unused").spark
    yield session
    session.stop()


@pytest.fixture(scope="session")
def local_embedder():
    """The real all-MiniLM-L6-v2, loaded once per session (about 10 s on two cores)."""
    from semtel_dagster.core.prepare.embeddings import LocalEmbedder

    return LocalEmbedder(progress=False)


SIM_MODEL = "sim-model"


@pytest.fixture(scope="module")
def clean_and_messy_sim():
    """A simulator with a clean endpoint and one whose batched answers miss ids or go out of set half the time."""
    from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread

    config = SimConfig(
        endpoints=[
            SimEndpointConfig(name="clean", model=SIM_MODEL),
            SimEndpointConfig(name="messy", model=SIM_MODEL, anomaly_rate=0.5, anomalies=["missing_id", "out_of_set"]),
        ]
    )
    with SimulatorThread(config) as running:
        yield running


def pytest_collection_modifyitems(config, items):
    """Markers by what a test needs: `spark` for anything that uses the Spark session, `embedding_model`
    for anything that uses the real embedding model, `unit` for the quick tests of tests/unit that start
    no Dagster run and load no model (`make test-fast` runs those)."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "spark" in fixtures or item.path.name.startswith("test_spark"):
            item.add_marker(pytest.mark.spark)
        if "local_embedder" in fixtures:
            item.add_marker(pytest.mark.embedding_model)
        quick = not any(item.iter_markers("integration")) and not any(item.iter_markers("embedding_model"))
        if item.path.parent.name == "unit" and quick:
            item.add_marker(pytest.mark.unit)
