"""The training runner's policy, pure: what a training event, a restart or a job's end asks of
a runner, decided from the training's state without a server, a process or a store."""

from __future__ import annotations

from test_training_handlers import envelopes

from services.training import commands as c
from services.training import events as e
from services.training.adapters.runtime import Exit
from services.training.handlers import TRAININGS
from services.training.workers import EndLeftover, RunJob, StopJob, on_exit, on_restart, policy

RUNNER = "host:/home"
CREATED = e.TrainingCreated(training_id="t1", space_id="s1", name="iris", source="architecture")
CLAIMED = e.TrainingBuildStarted(training_id="t1", runner=RUNNER)
STARTED = e.TrainingStarted(training_id="t1", runner=RUNNER, pid=4242)


def training(*events):
    return TRAININGS.fold(envelopes("training:t1", list(events)))


def test_a_created_training_still_queued_is_run():
    assert policy(CREATED, training(CREATED)) == [RunJob("t1")]


def test_a_created_training_already_claimed_or_deleted_is_not_run_again():
    assert policy(CREATED, training(CREATED, CLAIMED)) == []
    deleted = e.TrainingDeleted(training_id="t1")
    assert policy(CREATED, training(CREATED, deleted)) == []


def test_a_killed_or_deleted_training_stops_its_job():
    killed = e.TrainingKilled(training_id="t1")
    assert policy(killed, training(CREATED, CLAIMED, killed)) == [StopJob("t1")]
    deleted = e.TrainingDeleted(training_id="t1")
    assert policy(deleted, training(CREATED, deleted)) == [StopJob("t1")]


def test_other_training_events_ask_nothing():
    assert policy(STARTED, training(CREATED, CLAIMED, STARTED)) == []


def test_at_restart_a_queued_training_is_run():
    assert on_restart(training(CREATED), RUNNER) == [RunJob("t1")]


def test_at_restart_a_local_job_this_runner_held_is_ended_and_failed_as_interrupted():
    orders = on_restart(training(CREATED, CLAIMED, STARTED), RUNNER)
    assert orders[0] == EndLeftover("t1", 4242)
    [failed] = orders[1:]
    assert isinstance(failed, c.FailTraining) and failed.runner == RUNNER
    assert failed.reason == "interrupted: the platform restarted while the training was running"


def test_at_restart_a_kubernetes_job_this_runner_held_is_watched_again():
    on_k8s = CREATED.model_copy(update={"runtime": "kubernetes://"})
    assert on_restart(training(on_k8s, CLAIMED, STARTED), RUNNER) == [RunJob("t1", resume=True)]


def test_at_restart_another_runners_training_is_left_to_it():
    assert on_restart(training(CREATED, CLAIMED, STARTED), "other:/home") == []


def test_a_job_that_failed_fails_its_training_and_one_stopped_on_request_asks_nothing():
    running = training(CREATED, CLAIMED, STARTED)
    [failed] = on_exit(running, Exit(code=3))
    assert failed == c.FailTraining(
        training_id="t1", reason="the job exited with code 3", exit_code=3
    )
    [timed_out] = on_exit(running, Exit(code=None, reason="timed out after 5s"))
    assert timed_out.reason == "timed out after 5s"
    assert on_exit(running, Exit(code=None, reason="stopped")) == []
    assert on_exit(running, Exit(code=0)) == []
