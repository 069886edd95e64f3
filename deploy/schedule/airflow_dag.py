"""hyperflow: nightly retraining as an Airflow DAG (copy into the DAGs folder). max_active_runs=1 keeps
one run at a time here; the lock in MLflow (tag hyperflow.retrain_lock) guards across schedulers."""

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

COMMAND = (
    "mlflow run . -e retrain --env-manager local --experiment-name retrain "
    "-P model_name=${HYPERFLOW_MODEL} -P data=${HYPERFLOW_DATA}"
)

with DAG(
    dag_id="hyperflow_retrain",
    schedule="17 3 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0, "execution_timeout": timedelta(hours=6)},
    tags=["hyperflow", "mlflow"],
) as dag:
    BashOperator(
        task_id="retrain",
        bash_command=COMMAND,
        cwd="/opt/hyperflow",
        append_env=True,
        env={
            "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
            "HYPERFLOW_MODEL": "churn",
            "HYPERFLOW_DATA": "/data/churn/incoming",
            "PATH": "/opt/hyperflow/.venv/bin:/usr/local/bin:/usr/bin:/bin",
        },
    )
