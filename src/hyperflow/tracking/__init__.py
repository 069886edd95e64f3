"""The MLflow layer: the only package that imports ``mlflow``. ``runs`` (parent and child runs, params,
batched metrics, background calls, store errors), ``model`` (the pyfunc model and its logging), ``registry``
(versions and aliases), ``tensorboard`` (event files). The names below are its API for the layers above."""

from hyperflow.tracking.runs import (
    ROLE_TAG, PACKAGE_DIR, Terminated, tracked_run, log_params, log_results, call_now, end_run_quietly,
    child_run, BackgroundCalls, MlflowMetrics, unique_run_name, run_tags, log_dataset, log_figure,
    pip_requirements, log_model, log_lr_finder, tag_challenger, STORE_ERROR_CODES, is_store_error,
    store_error_text, one_line, reopened_run, finished_model, version_of_run, register_once)

__all__ = ['ROLE_TAG', 'PACKAGE_DIR', 'Terminated', 'tracked_run', 'log_params', 'log_results', 'call_now',
           'end_run_quietly', 'child_run', 'BackgroundCalls', 'MlflowMetrics', 'unique_run_name',
           'run_tags', 'log_dataset', 'log_figure', 'pip_requirements', 'log_model', 'log_lr_finder',
           'tag_challenger', 'STORE_ERROR_CODES', 'is_store_error', 'store_error_text', 'one_line',
           'reopened_run', 'finished_model', 'version_of_run', 'register_once']
