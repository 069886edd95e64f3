"""Hyperparameter search: ``space`` (YAML -> hyperopt / grid), ``stopping`` (the one stop rule), ``trial`` (the
one place a trial runs), ``runner`` (prepare, resume, the loops), ``resume``, ``finish``, the ``local`` and
``spark`` backends, ``hyperopt_records`` (all that knows hyperopt's trial records). No MLflow here: the search's
MLflow calls live in ``hyperflow.tracking.search_store``."""
