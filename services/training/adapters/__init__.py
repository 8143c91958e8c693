"""The training service's adapters: where jobs run (`runtime`: local subprocesses; `kube`:
Kubernetes Jobs, whose pods run `pod`), the storage a connector reads (`sources`: S3, a local
folder), a job's log stream (`logs`) and its output folder laid out as checkpoints (`outputs`).
Bootstrap picks and injects them; its decisions and folds import none of them."""
