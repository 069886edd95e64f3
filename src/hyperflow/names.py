"""Every tag, metric, alias and param name users and scripts rely on, in one place.

These strings are an interface: dashboards, `mlflow runs search` filters, CI scripts and the docs
name them. Renaming one is a breaking change. Code writes and reads them through these constants only.
Imports nothing, so every layer (core included) may use it.
"""

# --- run roles: tag ROLE on every run -------------------------------------------------------------
ROLE = "hyperflow.role"
ROLE_LR_FIND = "lr_find"
ROLE_TRAIN = "train"
ROLE_SEARCH = "search"
ROLE_TRIAL = "trial"
ROLE_PROMOTE = "promote"
ROLE_RETRAIN = "retrain"
ROLES = (ROLE_LR_FIND, ROLE_TRAIN, ROLE_SEARCH, ROLE_TRIAL, ROLE_PROMOTE, ROLE_RETRAIN)

# --- tags every run carries -------------------------------------------------------------------------
VERSION = "hyperflow.version"  # the hyperflow package version that wrote the run
PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's own: folds children under their parent in the UI
RUN_NAME = "mlflow.runName"  # MLflow's own
DATA_FINGERPRINT = "hyperflow.data_fingerprint"
TASK = "hyperflow.task"  # classification | regression | segmentation
DATA_SOURCE = "hyperflow.data"  # where the data came from (built-in name or path); kept as first written
TARGET = "hyperflow.target"
DROPPED_COLUMNS = "hyperflow.dropped_columns"
GIT_COMMIT = "hyperflow.git_commit"
CODE_VERSION = "hyperflow.code_version"  # a hash of hyperflow's source files (retrain: "same code")
BUILTIN_DATASET = "hyperflow.builtin"  # key of the dataset source for built-in data sets
CREATE_ID = "hyperflow.create_id"  # sent with the request that creates a run: a request sent twice makes twins
ORPHANED = "hyperflow.orphaned"  # why hyperflow ended a run that nothing owned (KILLED): a twin, a lost trial
SEARCH_LOCK = "hyperflow.search_lock"  # the process that works on a search run (a lease, see workflows/search_lock.py)
DUPLICATE_OF = "hyperflow.duplicate_of"  # on a twin ended as orphaned: the run its command went on with
NOTE = "mlflow.note.content"  # MLflow's own: the run's description (markdown) on its page in the UI

# --- experiments --------------------------------------------------------------------------------------
EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow's own: which view the UI opens the experiment in
MODEL_TRAINING = "custom_model_development"  # the model-training view (MLflow 3's UI), not the GenAI one
# MLflow 3.17's UI takes the view from the page's address (else the last one chosen; at first GenAI), not the tag
MODEL_TRAINING_VIEW = "workflowType=machine_learning"

# --- search and trials ------------------------------------------------------------------------------
TRIAL_STATUS = "hyperflow.trial_status"
TRIAL_OK = "ok"
TRIAL_FAILED = "failed"
TRIAL_PRUNED = "pruned"
TRIAL_STATUSES = (TRIAL_OK, TRIAL_FAILED, TRIAL_PRUNED)
TRIAL_NUMBER = "hyperflow.trial_number"
TRIAL_PARAMS = "hyperflow.trial_params"  # JSON of the point the trial ran
TRIAL_REASON = "hyperflow.trial_reason"
TRIAL_LOSS = "hyperflow.trial_loss"  # the loss the search minimised, exactly (an objective's trial; read by resume)
OBJECTIVE_VALUE = "value"  # an objective's trial: each value it reported (step = its step)
OBJECTIVE_LOSS = "loss"  # an objective's trial: the loss it returned
UNITS_USED = "units_used"  # the search run: units of work its trials used (epochs, or an objective's steps)
SEARCH_RUN_ID = "hyperflow.search_run_id"
VAL_LOSS_HISTORY = "hyperflow.val_loss_history"  # per-epoch val_loss as JSON
BEST_RUN_ID = "hyperflow.best_run_id"
BEST_PARAM_PREFIX = "hyperflow.best."  # + param name: the best trial's params on the search run
STOP_REASON = "hyperflow.stop_reason"
SETTINGS = "hyperflow.settings"  # JSON: settings a resume may change
SPACE = "hyperflow.space"  # the space in use, as YAML
RESUMES = "hyperflow.resumes"
MODEL_STATUS = "hyperflow.model_status"  # logged | failed: <error>

# --- train --------------------------------------------------------------------------------------------
TRAIN_STATUS = "hyperflow.train_status"  # completed | early_stopped | diverged
FAILURE_REASON = "hyperflow.failure_reason"

# --- LR finder ---------------------------------------------------------------------------------------
LR_FIND_STATUS = "lr_find_status"
LR_FIND_STATUS_HELP = "lr_find_status_help"
SUGGESTED_LR = "suggested_lr"
LR_RANGE_MIN = "lr_range_min"
LR_RANGE_MAX = "lr_range_max"
LR_FIND_LOSS = "lr_find_loss"
LR_FIND_SMOOTHED_LOSS = "lr_find_smoothed_loss"
LR_FIND_LR = "lr_find_lr"
LR_FIND_SUGGESTION_SPREAD = "lr_find_suggestion_spread"

# --- metrics ------------------------------------------------------------------------------------------
TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
BEST_VAL_LOSS = "best_val_loss"  # train runs and trials; on the search run, step = trials finished before
BEST_EPOCH = "best_epoch"
EPOCHS_RUN = "epochs_run"
TRAIN_SECONDS = "train_seconds"
VAL_PREFIX = "val_"
TEST_PREFIX = "test_"
ACCURACY = "accuracy"  # classes: val_accuracy, test_accuracy
RMSE = "rmse"  # regression: val_rmse, test_rmse
R2 = "r2"  # regression: test_r2
DICE = "dice"  # segmentation: val_dice, test_dice
F1 = "f1"  # classes, macro-averaged
LOG_LOSS = "log_loss"  # classes (scoring a registered model)
MAE = "mae"  # regression
IOU = "iou"  # segmentation
VAL_ACCURACY, TEST_ACCURACY = VAL_PREFIX + ACCURACY, TEST_PREFIX + ACCURACY
VAL_RMSE, TEST_RMSE, TEST_R2 = VAL_PREFIX + RMSE, TEST_PREFIX + RMSE, TEST_PREFIX + R2
VAL_DICE, TEST_DICE = VAL_PREFIX + DICE, TEST_PREFIX + DICE

# --- registry: aliases and version tags ----------------------------------------------------------------
CHAMPION = "champion"
CHALLENGER = "challenger"
VALIDATION_STATUS = "validation_status"
PASSED = "passed"
FAILED = "failed"
BASELINE_VERSION = "baseline_version"
VERSION_PROMOTE_RUN_ID = "promote_run_id"  # the promote run that validated the version
VERSION_PROMOTION_PREFIX = "promotion."  # promotion.<run id>: each promotion's line of the description
VERSION_RETRAIN_RUN_ID = "retrain_run_id"
VERSION_RETRAIN_KEY = "retrain_key"
VERSION_TRIAL_RUN_ID = "trial_run_id"  # a search's best trial, registered as challenger

# --- promote -----------------------------------------------------------------------------------------
MODEL_NAME = "hyperflow.model_name"
CANDIDATE_VERSION = "hyperflow.candidate_version"
DECISION = "hyperflow.decision"  # passed | failed
PROMOTED = "hyperflow.promoted"  # true | false
PROMOTE_BASELINE_VERSION = "hyperflow.baseline_version"
CHAMPION_CHANGED = "hyperflow.champion_changed"
CANDIDATE_PREFIX = "candidate_"  # promote run metrics: candidate_accuracy, ...
CHAMPION_PREFIX = "champion_"  # ... and champion_accuracy, when there is a champion
PROBABILITY_PREFIX = "probability_"  # a classifier's output column per class: probability_<class>

# --- retrain -----------------------------------------------------------------------------------------
OUTCOME = "hyperflow.outcome"
OUTCOME_PROMOTED = "promoted"
OUTCOME_REJECTED = "rejected"
OUTCOME_SKIPPED = "skipped"
RETRAIN_KEY = "hyperflow.retrain_key"
RETRAIN_LOCK = "hyperflow.retrain_lock"
VERSION_TRAINED = "hyperflow.version_trained"
PROMOTE_RUN_ID = "hyperflow.promote_run_id"
SKIPPED_FOR = "hyperflow.skipped_for"

# --- MLproject entry points, and the parameters they share ---------------------------------------------
ENTRY_POINTS = ("lr_find", "train", "search", "promote", "retrain")  # main = search
PARAM_DATA = "data"
PARAM_TARGET = "target"
PARAM_CONFIG = "config"
PARAM_SEED = "seed"
PARAM_MODEL_NAME = "model_name"
