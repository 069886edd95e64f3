"""The search engine, which knows no runs: ``plan`` (space + settings + resume state -> the trials to run),
``loop`` (the trials until the budget or the stop rule ends it), ``trial`` (the handle an objective gets and its
protocol), the space (``space``, ``grid``, ``space_points``, ``space_hyperopt``), ``stopping``,
``hyperopt_records`` (all that knows hyperopt's internals), the backends ``workers`` (local processes) and
``spark``. The search's runs are the workflow's: ``hyperflow.workflows.search``."""
