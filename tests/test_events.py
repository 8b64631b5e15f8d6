"""The run's TensorBoard event files can be read back and tell the story of the run."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from charrnn.training.loop import train


def test_event_files_hold_falling_train_loss_and_val_metrics(make_config):
    text = "abcabdabcabd" * 8
    cfg = make_config(text=text, train={"max_steps": 60, "eval_every": 20, "seq_length": 8, "batch_size": 4},
                      log={"tensorboard": True})
    result = train(cfg, quiet=True)
    acc = EventAccumulator(str(result.run_dir))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in ("train/loss", "train/lr", "train/grad_norm", "train/chars_per_sec", "val/loss", "val/bpc",
                "val/accuracy"):
        assert tag in tags
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert [e.step for e in acc.Scalars("val/loss")] == [20, 40, 60]
    assert [e.step for e in acc.Scalars("val/bpc")] == [20, 40, 60]
