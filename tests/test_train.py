"""The trainer, its checkpoint cache and crash-resume."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import CPU, TINY_RECIPE

from unlearnkit.data import NO_AUGMENT
from unlearnkit.models import build_model
from unlearnkit.tasks import place
from unlearnkit.train import NonFiniteLossError, TrainJob, TrainRecipe, lr_at, train, train_cached


def fresh_model(dataset, seed=0):
    torch.manual_seed(seed)
    mean, std = dataset.channel_stats()
    return build_model("mlp", dataset.num_classes, dataset.image_shape, mean, std)


def flat(model):
    return torch.cat([t.detach().flatten().float() for t in model.state_dict().values()])


def test_one_cycle_schedule_rises_then_falls():
    recipe = TrainRecipe(warmup_frac=0.2, start_lr_frac=0.1, final_lr_frac=0.0)
    values = [lr_at(s, 100, recipe) for s in range(101)]
    assert values[0] == pytest.approx(0.1) and values[20] == pytest.approx(1.0)
    assert values[100] == pytest.approx(0.0, abs=1e-9)
    assert all(a <= b for a, b in zip(values[:20], values[1:21], strict=True)) and all(a >= b for a, b in zip(values[20:], values[21:], strict=False))


def test_training_learns_and_is_reproducible(small_digits, class_3):
    images = place(class_3, CPU).train
    idx = np.arange(len(small_digits.train))
    models = [fresh_model(small_digits) for _ in range(2)]
    stats = [train(m, images, idx, TINY_RECIPE, seed=1, augment=NO_AUGMENT) for m in models]
    assert stats[0].history[-1] < stats[0].history[0] / 3
    assert torch.equal(flat(models[0]), flat(models[1]))


def test_nan_loss_raises(small_digits, class_3):
    images = place(class_3, CPU).train
    with pytest.raises(NonFiniteLossError, match="lower the learning rate"):
        train(fresh_model(small_digits), images, np.arange(100), replace(TINY_RECIPE, lr=1e30, epochs=3), seed=0, augment=NO_AUGMENT)


def test_interrupted_training_resumes_exactly(small_digits, class_3, tmp_path):
    images = place(class_3, CPU).train
    idx = np.arange(len(small_digits.train))
    recipe = replace(TINY_RECIPE, epochs=6)
    reference = fresh_model(small_digits)
    train(reference, images, idx, recipe, seed=2, augment=NO_AUGMENT)

    class Crash(Exception):
        pass

    def crash_after_three(done, total, loss):
        if done == 3:
            raise Crash

    partial = tmp_path / "run.partial.safetensors"
    with pytest.raises(Crash):
        train(fresh_model(small_digits), images, idx, recipe, seed=2, augment=NO_AUGMENT, progress=crash_after_three, resume_path=partial, checkpoint_every_s=0)
    assert partial.exists()
    resumed = fresh_model(small_digits, seed=99)  # different init: everything must come from the checkpoint
    earlier_s = json.loads(partial.with_suffix(".json").read_text())["time_s"]
    stats = train(resumed, images, idx, recipe, seed=2, augment=NO_AUGMENT, resume_path=partial)
    assert stats.resumed_from_epoch == 2  # the save after epoch 2 is the last before the crash at 3
    torch.testing.assert_close(flat(resumed), flat(reference))
    assert earlier_s > 0 and stats.time_s > earlier_s  # the reported cost includes the epochs before the crash


def test_a_partial_checkpoint_torn_between_its_two_files_starts_over(small_digits, class_3, tmp_path):
    from unlearnkit.train import _save_partial, make_optimizer

    images, idx, recipe = place(class_3, CPU).train, class_3.retain_idx, replace(TINY_RECIPE, epochs=3)
    partial = tmp_path / "run.partial.safetensors"
    model = fresh_model(small_digits)
    _save_partial(partial, model, make_optimizer(model, recipe), epoch=1, time_s=1.0)
    sidecar = partial.with_suffix(".json").read_bytes()
    _save_partial(partial, fresh_model(small_digits, seed=5), make_optimizer(model, recipe), epoch=2, time_s=2.0)
    partial.with_suffix(".json").write_bytes(sidecar)  # killed after the weights were replaced, before the sidecar
    stats = train(fresh_model(small_digits), images, idx, recipe, seed=2, augment=NO_AUGMENT, resume_path=partial)
    assert stats.resumed_from_epoch == 0  # not "epoch 1" with epoch-2 weights


def test_corrupted_weights_are_refused_and_a_cached_model_is_retrained(small_digits, class_3, tmp_path):
    from unlearnkit.checkpoint import CheckpointError, load_state, save_checkpoint

    path = save_checkpoint(fresh_model(small_digits), tmp_path / "m")
    data = bytearray(path.read_bytes())
    data[-64:] = bytes(b ^ 0xFF for b in data[-64:])  # bit rot inside the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the hash saved with them"):
        load_state(fresh_model(small_digits), path)
    sidecar = path.with_suffix(".json")
    save_checkpoint(fresh_model(small_digits), tmp_path / "m", {"note": "a"})
    sidecar.write_text('{"note": "edited by hand"}')
    assert load_state(fresh_model(small_digits), path) == {"note": "edited by hand"}  # a user's own sidecar may change


def test_cache_key_follows_augmentation_and_ignores_the_test_split(small_digits, class_3):
    from unlearnkit.data import Dataset

    base = TrainJob(small_digits, "mlp", class_3.retain_idx, class_3.train_labels, "fine", TINY_RECIPE, seed=0)
    flipped = Dataset("imagefolder", small_digits.train, small_digits.test)  # same arrays, crop+flip augmentation
    assert replace(base, dataset=flipped).key() != base.key()
    fewer_tests = small_digits.subset(None, 50)
    assert replace(base, dataset=fewer_tests).key() == base.key()  # another --test-size reuses the model


def test_cache_reuses_the_trained_model(small_digits, class_3, tmp_path):
    splits = place(class_3, CPU)
    job = TrainJob(small_digits, "mlp", class_3.retain_idx, class_3.train_labels, "fine", replace(TINY_RECIPE, epochs=2), seed=0)
    first, meta = train_cached(job, splits.train, cache_dir=tmp_path, test_images=splits.test, test_idx=class_3.test_retain_idx)
    second, meta2 = train_cached(job, splits.train, cache_dir=tmp_path)
    assert not meta["cached"] and meta2["cached"]
    assert torch.equal(flat(first), flat(second))
    assert meta2["test_acc"] == meta["test_acc"] and meta2["data_fingerprint"] == small_digits.fingerprint()
    assert len(list((tmp_path / "models").glob("*.safetensors"))) == 1  # the partial file was removed


def test_a_damaged_cache_entry_is_retrained_and_replaced(small_digits, class_3, tmp_path):
    splits = place(class_3, CPU)
    job = TrainJob(small_digits, "mlp", class_3.retain_idx, class_3.train_labels, "fine", replace(TINY_RECIPE, epochs=2), seed=0)
    first, _ = train_cached(job, splits.train, cache_dir=tmp_path)
    (entry,) = (tmp_path / "models").glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:40])  # an interrupted copy of the cache
    again, meta = train_cached(job, splits.train, cache_dir=tmp_path)
    assert not meta["cached"] and torch.equal(flat(first), flat(again))  # same seed, same model
    assert train_cached(job, splits.train, cache_dir=tmp_path)[1]["cached"]


def test_an_unreadable_partial_checkpoint_starts_training_over(small_digits, class_3, tmp_path):
    images, idx = place(class_3, CPU).train, class_3.retain_idx
    recipe = replace(TINY_RECIPE, epochs=2)
    partial = tmp_path / "run.partial.safetensors"
    partial.write_bytes(b"garbage")
    partial.with_suffix(".json").write_text('{"epoch": 1}')
    stats = train(fresh_model(small_digits), images, idx, recipe, seed=2, augment=NO_AUGMENT, resume_path=partial)
    assert stats.resumed_from_epoch == 0 and stats.epochs == 2


def test_cache_key_depends_on_what_determines_the_model(small_digits, class_3):
    base = TrainJob(small_digits, "mlp", class_3.retain_idx, class_3.train_labels, "fine", TINY_RECIPE, seed=0)
    variants = [
        replace(base, seed=1),
        replace(base, train_idx=class_3.forget_idx),
        replace(base, recipe=replace(TINY_RECIPE, lr=0.2)),
        replace(base, model_name="cnn"),
    ]
    assert len({base.key(), *(v.key() for v in variants)}) == 5
    assert replace(base, recipe=replace(TINY_RECIPE, compile=True)).key() == base.key()
