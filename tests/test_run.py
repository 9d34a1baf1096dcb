"""scripts/ppo.py and rltasks.trial.run: options, config files, results, and bad input."""

from __future__ import annotations

import json

import pytest
from helpers import last_json, results_in, run_script

from rltasks import checkpoint
from rltasks.trial.options import resolve
from rltasks.trial.run import main

FAST = ["--steps-per-epoch", "256", "--num-envs", "2", "--eval-episodes", "2"]


def test_script_trains_alone_and_prints_a_final_json_line(tmp_path):
    proc = run_script("ppo", "--env", "CartPole-v1", "--epochs", "2", *FAST, workdir=tmp_path)
    result = last_json(proc)
    assert result["epoch"] == 2 and result["env_steps"] == 512
    assert result["objective"] == -result["return_mean"]
    assert results_in(tmp_path)["objective"] == result["objective"]
    ckpt = checkpoint.load(tmp_path / "last.ckpt")
    assert ckpt["task"] == "ppo" and ckpt["epoch"] == 2 and ckpt["fixed"]["env"] == "CartPole-v1"
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert "sps" in json.loads(lines[0]) and "sps" not in ckpt["state"]["history"][0]


def test_orion_working_dir_is_the_default_workdir(tmp_path):
    trial = {"ORION_WORKING_DIR": str(tmp_path / "trial"),
             "ORION_RESULTS_PATH": str(tmp_path / "r.json")}
    proc = run_script("ppo", "--epochs", "1", *FAST, env=trial)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "trial" / "last.ckpt").exists()
    reported = json.loads((tmp_path / "r.json").read_text())
    objective = [r for r in reported if r["type"] == "objective"][0]["value"]
    results = results_in(tmp_path / "trial")
    assert objective == -results["return_mean"]


def test_config_file_is_parsed_by_content_and_cli_wins(tmp_path):
    conf = tmp_path / "trial_abc.conf"  # Orion's copies always end in .conf
    conf.write_text("lr: 0.002\noptimizer: sgd\nclip-range: 0.3\nepochs: 4\n"
                    "ent_coef: 'orion~uniform(0, 0.1)'\n")
    options, hparams = resolve("ppo", ["--config", str(conf), "--lr", "0.005"])
    assert hparams == {"lr": 0.005, "optimizer": "sgd", "clip_range": 0.3}
    assert options["epochs"] == 4
    conf.write_text('{"lr": 0.001, "norm_adv": "false"}')
    assert resolve("ppo", ["--config", str(conf)])[1] == {"lr": 0.001, "norm_adv": "false"}
    assert resolve("ppo", ["--norm-adv", "false", "--clip_range", "0.1"])[1] == {
        "norm_adv": False, "clip_range": 0.1}


@pytest.mark.parametrize(("args", "needle"), [
    (["--env", "CartPoel-v1"], "unknown env id 'CartPoel-v1'"),
    (["--learning-rate", "0.1"], "unrecognized arguments: --learning-rate"),
    (["--lr", "-0.001"], "lr=-0.001 is out of range"),
    (["--epochs", "0"], "--epochs 0"),
    (["--optimizer", "lbfgs"], "optimizer='lbfgs'"),
    (["--objective", "best"], "--objective 'best' is not one of ('final', 'curve')"),
])
def test_bad_input_is_one_line_naming_the_value(args, needle, tmp_path):
    proc = run_script("ppo", *args, *FAST, workdir=tmp_path)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1, proc.stderr


def test_objective_curve_reports_the_mean_training_return_over_epochs(tmp_path, capsys):
    """``--objective curve``: what Orion minimises is minus the mean over epochs of the
    training episodes' mean return (the learning curve's area), not the final evaluation's."""
    assert main("ppo", ["--epochs", "3", *FAST, "--objective", "curve", "--workdir",
                        str(tmp_path)]) == 0
    results = results_in(tmp_path)
    history = checkpoint.load(tmp_path / "last.ckpt")["state"]["history"]
    curve = [row["return_mean"] for row in history]
    assert len(curve) == 3 and None not in curve and len(set(curve)) == 3
    assert results["objective"] == pytest.approx(-sum(curve) / 3, rel=1e-12)
    assert results["objective"] != -results["return_mean"]
    assert results["objective_kind"] == "curve"
    # --seeds: the mean of the seeds' curve objectives
    seeds = tmp_path / "seeds"
    assert main("ppo", ["--epochs", "2", *FAST, "--objective", "curve", "--seeds", "2",
                        "--workdir", str(seeds)]) == 0
    mean = results_in(seeds)
    each = [results_in(seeds / f"seed-{k}") for k in (0, 1)]
    assert [r["objective_kind"] for r in (mean, *each)] == ["curve"] * 3
    assert all(r["objective"] != -r["return_mean"] for r in each)
    assert mean["objective"] == pytest.approx((each[0]["objective"] + each[1]["objective"]) / 2)


def test_bad_config_file(tmp_path, capsys):
    conf = tmp_path / "x.conf"
    conf.write_text("lr: [unclosed\n")
    assert main("ppo", ["--config", str(conf), "--workdir", str(tmp_path)]) == 2
    assert "is not YAML or JSON" in capsys.readouterr().err
    conf.write_text("lr: 0.001\nlearning_rate: 3\n")
    assert main("ppo", ["--config", str(conf)]) == 2
    assert "unknown option(s) ['learning_rate']" in capsys.readouterr().err
    assert main("ppo", ["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read --config" in capsys.readouterr().err


def test_resume_continues_and_refuses_a_foreign_checkpoint(tmp_path, capsys):
    args = ["--workdir", str(tmp_path), *FAST]
    assert main("ppo", ["--epochs", "1", *args]) == 0
    assert main("ppo", ["--epochs", "2", *args]) == 0
    out = capsys.readouterr()
    assert "resumed from" in out.err
    assert json.loads(out.out.strip().splitlines()[-1])["resumed_from"] == 1
    assert main("ppo", ["--epochs", "2", "--lr", "0.01", *args]) == 2
    assert "holds a checkpoint of another run (lr=0.0003 there, 0.01 here)" in (
        capsys.readouterr().err)
    assert main("ppo", ["--epochs", "2", "--env", "Acrobot-v1", *args]) == 2
    assert "env='CartPole-v1' there, 'Acrobot-v1' here" in capsys.readouterr().err


def test_corrupt_last_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    args = ["--workdir", str(tmp_path), *FAST]
    assert main("ppo", ["--epochs", "2", *args]) == 0
    (tmp_path / "last.ckpt").write_bytes(b"\x00garbage")
    capsys.readouterr()
    assert main("ppo", ["--epochs", "3", *args]) == 0
    out = capsys.readouterr()
    assert "falling back" in out.err
    assert json.loads(out.out.strip().splitlines()[-1])["resumed_from"] == 1


def test_nan_loss_exits_3_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    from rltasks.tasks.ppo import PPO

    args = ["--workdir", str(tmp_path), *FAST]
    assert main("ppo", ["--epochs", "1", *args]) == 0
    good = (tmp_path / "last.ckpt").read_bytes()
    real = PPO.update
    monkeypatch.setattr(PPO, "update",
                        lambda self, b: {**real(self, b), "value_loss": float("inf")})
    assert main("ppo", ["--epochs", "3", *args]) == 3
    err = capsys.readouterr().err
    assert "value_loss became inf in epoch 2" in err
    assert (tmp_path / "last.ckpt").read_bytes() == good


def test_eval_every_keeps_the_best_evaluation_unless_save_best_is_off(tmp_path, capsys):
    args = ["--epochs", "2", "--eval-every", "1", "--save-freq", "2", *FAST]
    assert main("ppo", [*args, "--workdir", str(tmp_path / "a")]) == 0
    best = checkpoint.load(tmp_path / "a" / "best.ckpt")
    assert best["task"] == "ppo" and best["epoch"] in (1, 2)
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert all("eval_return_mean" in row for row in rows)
    assert main("ppo", [*args, "--save-best", "false", "--workdir", str(tmp_path / "b")]) == 0
    assert not (tmp_path / "b" / "best.ckpt").exists()
    assert (tmp_path / "b" / "last.ckpt").exists()


def test_an_epoch_rounded_up_to_whole_rollouts_says_so_once(tmp_path, capsys):
    """PPO's epoch is whole rollouts of n_steps x num_envs: 100 asked, 128 taken, said."""
    args = ["--steps-per-epoch", "100", "--num-envs", "2", "--n-steps", "64", "--epochs", "1",
            "--eval-episodes", "1", "--workdir", str(tmp_path / "rounded")]
    assert main("ppo", args) == 0
    err = capsys.readouterr().err
    assert ("epoch: 128 env steps, --steps-per-epoch 100 rounded up (a rollout is n_steps 64 "
            "x 2 envs)") in err.splitlines()
    assert results_in(tmp_path / "rounded")["env_steps"] == 128
    args[1], args[-1] = "128", str(tmp_path / "whole")
    assert main("ppo", args) == 0
    assert "epoch:" not in capsys.readouterr().err
    default = ["--num-envs", "2", "--n-steps", "48", "--epochs", "1", "--eval-episodes", "1",
               "--workdir", str(tmp_path / "default")]
    assert main("ppo", default) == 0
    assert ("epoch: 4,128 env steps, the default 4,096 rounded up (a rollout is n_steps 48 x 2 "
            "envs)") in capsys.readouterr().err.splitlines()
