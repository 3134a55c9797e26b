"""A fold's end: its final weights (the best epoch's, or the mean of the k best with BatchNorm
statistics recomputed), its OOF and test predictions with TTA, and, last, the done-record. Every
process predicts; only the main process writes."""

from __future__ import annotations

import shutil
import time

import pandas as pd
import torch
from safetensors.torch import save as safetensors_bytes

from podium import artifacts
from podium.console import say
from podium.evaluate.plots import plot_history
from podium.predict.forward import logits_of, predict
from podium.predict.tta import views as tta_views
from podium.runs import layout
from podium.train.loaders import FoldData
from podium.train.state import FoldState, Step


def average_weights(weights: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of several state dicts (floating tensors, summed in float64); integer
    buffers (BatchNorm's batch counter) are the first one's."""
    return {k: (torch.stack([w[k].double() for w in weights]).mean(dim=0).to(v.dtype) if v.is_floating_point()
                else v.clone()) for k, v in weights[0].items()}


def has_batchnorm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recompute_batchnorm(model: torch.nn.Module, batches, accelerator) -> int:
    """Every BatchNorm layer's running mean and variance measured again over `batches` ((normalized
    images, features) pairs), as torch.optim.swa_utils.update_bn does: averaged weights do not go with the
    statistics of any one epoch. Each process measures its share of the training rows; the
    statistics are then averaged over the processes, so every process holds the same model.
    Returns the number of images seen by this process."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = {m: m.momentum for m in layers}
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches, not an exponential one
    was_training = model.training
    model.train()
    seen = 0
    for images, features in batches:
        logits_of(model, images, features)
        seen += len(images)
    for m in layers:
        m.momentum = momenta[m]
        if accelerator.num_processes > 1:
            m.running_mean.copy_(accelerator.reduce(m.running_mean.clone(), reduction="mean"))
            m.running_var.copy_(accelerator.reduce(m.running_var.clone(), reduction="mean"))
    model.train(was_training)
    return seen


def final_weights(step: Step, data: FoldData, state: FoldState, model: torch.nn.Module) -> tuple[dict, list[int]]:
    """(The fold's final weights, loaded into `model`; the epochs they come from). With
    train.average_top_k > 1, the mean of the k best epochs (fewer when fewer ran at the full size),
    with BatchNorm statistics recomputed on the training images at the full size; else the best epoch."""
    cfg = step.cfg
    if cfg.train.average_top_k < 2 or len(state.top) < 2:
        model.load_state_dict(state.best_weights)
        return state.best_weights, [state.best_epoch]
    model.load_state_dict(average_weights(state.top_weights))
    if has_batchnorm(model):
        data.size_state.set(state.epoch, cfg.train.image_size)
        recompute_batchnorm(model, ((step.normalize(images), features) for images, features, _, _ in data.train_loader),
                            step.accelerator)
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return weights, sorted(t["epoch"] for t in state.top)


def finish(step: Step, data: FoldData, state: FoldState, fold: int, inputs: dict[str, str],
           started: tuple[float, int]) -> None:
    """Predict the held-out fold and the test set with the final weights (`final_weights`), the
    same way; with averaging, the held-out fold with the best epoch's weights too. The main process
    writes weights, predictions and, last, the done-record."""
    cfg, comp, accelerator = step.cfg, step.comp, step.accelerator
    data.valid_state.set(state.epoch, cfg.train.image_size)  # the OOF at the full size, as the test set
    views = tta_views(cfg.predict)
    # In float32 whatever the training precision: the OOF score and the submission do not depend
    # on the device's fast arithmetic, and the offline bundle (float32) reproduces them. Training
    # is over, so accelerate's autocast wrapper comes off the forward for good (a compiled model
    # stays compiled: with mixed precision its float32 forward is one more graph).
    final = accelerator.unwrap_model(step.eval_model, keep_fp32_wrapper=False)
    predicting = time.time()
    best_oof = None
    averaging = cfg.train.average_top_k > 1 and len(state.top) > 1
    if averaging:  # the best epoch alone, for make oof to score beside the average
        final.load_state_dict(state.best_weights)
        best_oof, _, _ = predict(final, data.valid_loader, step.normalize, accelerator, comp.task, views=views,
                                 with_loss=False, autocast=False)
    averaging_started = time.time()
    weights, epochs = final_weights(step, data, state, final)
    averaging_seconds = time.time() - averaging_started
    oof_probs, _, oof_plain = predict(final, data.valid_loader, step.normalize, accelerator, comp.task, views=views,
                                      with_loss=False, autocast=False)
    test_probs, _, test_plain = predict(final, data.test_loader, step.normalize, accelerator, comp.task,
                                        views=views, with_loss=False, autocast=False)
    predict_seconds = time.time() - predicting - averaging_seconds
    if accelerator.is_main_process:
        out, id_col, cols = layout.fold_dir(cfg, fold), cfg.data.id_column, comp.prob_columns
        artifacts.write_bytes(out / layout.WEIGHTS, safetensors_bytes({k: v.contiguous() for k, v in weights.items()}))
        written = [(layout.OOF_CSV, data.valid_df[id_col], oof_probs), (layout.TEST_CSV, comp.test[id_col], test_probs)]
        if len(views) > 1:
            written += [(layout.OOF_PLAIN_CSV, data.valid_df[id_col], oof_plain),
                        (layout.TEST_PLAIN_CSV, comp.test[id_col], test_plain)]
        if cfg.train.average_top_k > 1:  # the best epoch's OOF, beside; the fold's own when nothing was averaged
            written.append((layout.OOF_BEST_EPOCH_CSV, data.valid_df[id_col], best_oof if averaging else oof_probs))
        for name, ids, probs in written:
            artifacts.write_csv(out / name, layout.prediction_frame(ids, data.unscale(probs), cols, id_col))
        history = pd.DataFrame(state.history)
        history["in_final_weights"] = history["epoch"].isin(epochs)
        artifacts.write_csv(out / layout.HISTORY_CSV, history)
        # Wall time of this run from its first epoch to the written predictions (checkpoints and
        # the final OOF/test passes included; start-up and a resumed run's earlier epochs not).
        start_time, first_epoch = started
        seconds = round(time.time() - start_time, 2)
        info = {"seconds": seconds, "epochs_run": state.epoch - first_epoch, "tta_views": len(views),
                "predict_seconds": round(predict_seconds, 2), "averaging_seconds": round(averaging_seconds, 2),
                "final_weights_epochs": epochs}
        if data.target_scale is not None:  # the offline bundle maps its outputs back with it
            info["target_scale"] = list(data.target_scale)
        if data.features is not None:  # the metadata's scaling fitted on this fold's training rows, for the bundle
            info["features"] = data.features.to_json()
        layout.mark_trained(cfg, fold, inputs, info=info)
        plot_history(history, cfg.metric, out / layout.HISTORY_PNG)
        if not cfg.checkpoint.keep:  # the fold is done; its optimizer state is dead weight on disk
            shutil.rmtree(out / layout.CHECKPOINTS, ignore_errors=True)
        tta = f", TTA over {len(views)} views" if len(views) > 1 else ""
        avg = (f"; final weights: the mean of epochs {', '.join(str(e + 1) for e in epochs)} "
               f"({averaging_seconds:.0f} s averaging)") if averaging else ""
        say(f"fold {fold}: best {cfg.metric} {state.best_score:.4f} at epoch {state.best_epoch + 1}{avg}; wrote "
            f"{out}/ ({seconds:.0f} s, of which {predict_seconds:.0f} s predicting the fold and the test set{tta})")
