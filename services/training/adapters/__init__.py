"""The training service's adapters: where jobs run (`runtime`: local subprocesses; `kube`:
Kubernetes Jobs, whose pods run `pod`), what a job is and where a local one is laid out
(`workspace`), the storage a connector reads (`sources`: S3, a local folder), a job's log
stream (`logs`) and its output folder laid out as checkpoints (`outputs`). Bootstrap picks and
injects them; the service's decisions and folds import none of them."""
