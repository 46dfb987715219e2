"""The System tab: the server's settings (an admin changes them; others see them), the GPU
memory panel with a chart of the last hour (GPU memory, host RSS, queue depth), Deep GPU
cleanup and Unload model."""

from __future__ import annotations

import time
from datetime import datetime

import gradio as gr
import pandas as pd

from .. import api, metrics
from ..context import AppContext
from ..modules import gpu
from ..modules import settings as settings_mod
from ..modules.engines import loaded_engine
from ..modules.models import pick
from ..modules.vads import VAD_BACKENDS
from .common import LANGUAGES, MAX_SEGMENT_CHOICES, PRIVATE, SCRIPT_CHOICES, OnLoad, fmt_bytes, md_text


def build(ctx: AppContext) -> OnLoad:
    with gr.Tab("System", id="system", elem_id="tab-system"):
        with gr.Row():
            with gr.Column(scale=3, min_width=420):
                who = gr.Markdown(elem_id="sys-who")
                fields = _settings_fields()
                save = gr.Button("Save settings", variant="primary", elem_id="sys-save")
                save_msg = gr.Markdown(elem_id="sys-save-msg")
            with gr.Column(scale=2, min_width=320):
                gr.Markdown("### Device and GPU memory")
                memory = gr.Markdown(elem_id="sys-memory")
                gr.Markdown("### The last hour\nSampled every 10 s (GPU lines only where there is a GPU).",
                            elem_classes=["muted"])
                memory_chart = gr.LinePlot(x="time", y="GiB", color="series", title="Memory (GiB)",
                                           height=220, elem_id="sys-memory-chart")
                queue_chart = gr.LinePlot(x="time", y="jobs", color="series", title="Queue depth (jobs)",
                                          height=180, elem_id="sys-queue-chart")
                refresh = gr.Button("Refresh", size="sm", elem_id="sys-refresh")
                cleanup = gr.Button("Deep GPU cleanup", variant="primary", elem_id="sys-cleanup")
                unload = gr.Button("Unload model", variant="stop", elem_id="sys-unload")
                action = gr.Markdown(elem_id="sys-action")

    def do_save(request: gr.Request, *values):
        try:
            return ctx.update(_settings_from(ctx, *values), ctx.visitor(request))
        except (ValueError, OSError, RuntimeError, PermissionError) as exc:
            return f"**Not saved: {md_text(exc)}**"

    # Operator actions: a cleanup or unload makes the next job of every user wait for a reload.
    def do_cleanup(request: gr.Request):
        if not ctx.visitor(request).is_admin:
            return "**Only an administrator can run Deep GPU cleanup.**", memory_md(ctx)
        return _cleanup_report(api.deep_cleanup_json(ctx.queue)), memory_md(ctx)

    def do_unload(request: gr.Request):
        if not ctx.visitor(request).is_admin:
            return "**Only an administrator can unload the model.**", memory_md(ctx)
        _, message = ctx.queue.unload_model()
        return message, memory_md(ctx)

    save.click(do_save, inputs=fields, outputs=[save_msg], **PRIVATE)
    refresh.click(lambda: (memory_md(ctx), *charts(ctx)), outputs=[memory, memory_chart, queue_chart], **PRIVATE)
    cleanup.click(do_cleanup, outputs=[action, memory], **PRIVATE)
    unload.click(do_unload, outputs=[action, memory], **PRIVATE)
    def on_load(request: gr.Request) -> tuple:
        admin = ctx.visitor(request).is_admin
        note = "" if admin else ("*The server's settings, as the administrator set them (read-only). Your own "
                                 "choices (model, language, ITN, hotwords) go with each job on the Transcribe tab.*")
        # A non-admin sees the values only: fields that cannot be typed in, no Save, no operator buttons.
        operator = gr.update(visible=admin)
        return (note, *_settings_values(ctx, admin), memory_md(ctx), *charts(ctx), operator, operator, operator)

    return OnLoad([who, *fields, memory, memory_chart, queue_chart, save, cleanup, unload], on_load)


def _settings_fields() -> list:
    """The settings inputs, in the order _settings_values and _settings_from use."""
    gr.Markdown("### Settings\nSaved to the settings file and kept across restarts.")
    with gr.Row():
        device = gr.Dropdown(list(settings_mod.DEVICES), label="Device", elem_id="sys-device")
        precision = gr.Dropdown(list(settings_mod.PRECISIONS), label="Precision", elem_id="sys-precision")
        compile_box = gr.Checkbox(label="torch.compile", elem_id="sys-compile")
    model = gr.Dropdown([], label="Default model (from the offered list)", elem_id="sys-model")
    with gr.Row():
        margin = gr.Slider(0.0, 0.9, step=0.05, label="Batching memory margin (fraction kept free)",
                           elem_id="sys-margin")
        max_segment = gr.Dropdown(MAX_SEGMENT_CHOICES, allow_custom_value=True,
                                  label="VAD maximum segment length (auto = 45/60/90 s by length)",
                                  elem_id="sys-max-segment")
        vad = gr.Dropdown(list(VAD_BACKENDS), label="VAD inside segments (librosa: fast CPU, music taken out by Silero)", elem_id="sys-vad")
    with gr.Row():
        language = gr.Dropdown(LANGUAGES, allow_custom_value=True, label="Default language",
                               elem_id="sys-language")
        # The default for each new job's ITN box; the job's own box decides for that job.
        itn_box = gr.Checkbox(label="ITN on", elem_id="sys-itn")
        chinese = gr.Dropdown(SCRIPT_CHOICES, label="Default Chinese script", elem_id="sys-script")
    hotwords = gr.Textbox(label="Default hotwords", elem_id="sys-hotwords")
    history_path = gr.Textbox(label="History database (history.db)", elem_id="sys-history")
    roots = gr.Textbox(label="Batch folders (one per line; server folders a batch may read)", lines=2,
                       elem_id="sys-roots")
    with gr.Accordion("Models, disk and limits", open=False):
        with gr.Row():
            models_dir = gr.Textbox(label="Models folder (each model folder in it is offered)", elem_id="sys-models-dir")
            hub_models = gr.Textbox(label="Hub ids offered (one per line)", lines=2, elem_id="sys-hub-models")
        with gr.Row():
            retention = gr.Number(label="Keep uploads and results (days)", minimum=0.01, elem_id="sys-retention")
            quota = gr.Number(label="Disk quota for them (GB)", minimum=0.01, elem_id="sys-quota")
            vram = gr.Number(label="VRAM cap (GB, 0 = whole card)", minimum=0, elem_id="sys-vram")
        with gr.Row():
            max_upload = gr.Number(label="Largest upload (MB; after a restart)", minimum=1, elem_id="sys-max-upload")
            max_hours = gr.Number(label="Longest recording (hours)", minimum=0.01, elem_id="sys-max-hours")
            max_files = gr.Number(label="Files per batch", minimum=1, precision=0, elem_id="sys-max-files")
            max_jobs = gr.Number(label="Jobs waiting per user", minimum=1, precision=0, elem_id="sys-max-jobs")
    return [device, precision, compile_box, model, margin, max_segment, vad, language, itn_box, hotwords,
            history_path, roots, models_dir, hub_models, retention, quota, vram, max_upload, max_hours, max_files,
            max_jobs, chinese]


def _settings_values(ctx: AppContext, admin: bool = True) -> tuple:
    """The fields' values (as updates: editable for an admin only)."""
    s = ctx.settings
    names = [m.name for m in ctx.models()]
    values = (s.device, s.precision, s.compile, None, s.memory_margin,
            str(s.max_segment).removesuffix(".0"), s.vad, s.language, s.itn, s.hotwords, s.history_path,
            "\n".join(s.batch_roots), s.models_dir, "\n".join(s.hub_models), s.retention_days, s.disk_quota_gb,
            s.vram_limit_gb, s.max_upload_mb, s.max_audio_hours, s.max_batch_files, s.max_jobs_per_user, s.script)
    updates = [gr.update(value=v, interactive=admin) for v in values]
    updates[3] = gr.update(choices=names, value=names[0], interactive=admin)  # the model list
    return tuple(updates)


def _settings_from(ctx: AppContext, dev, prec, comp, mdl, marg, maxseg, vad_name, lang, itn_on, hot, hist,
                   root_text, models_dir, hub_text, retention, quota, vram, max_upload, max_hours, max_files,
                   max_jobs, chinese) -> settings_mod.AppSettings:
    """New settings from the fields; an empty field keeps its current value. The model is one of
    the offered list (a free path only from the settings file)."""
    s = ctx.settings

    def number(value, current):
        return current if value is None else type(current)(value)

    return s.with_changes(
        device=dev or "auto", precision=prec or "auto", compile=bool(comp), model=pick(mdl or "", ctx.models()),
        memory_margin=float(marg if marg is not None else 0.15), max_segment=maxseg or "auto",
        vad=vad_name or "librosa", language=lang or "auto", itn=bool(itn_on), hotwords=hot or "",
        history_path=hist or "history.db", batch_roots=tuple((root_text or "").splitlines()),
        models_dir=models_dir or s.models_dir, hub_models=tuple((hub_text or "").splitlines()),
        retention_days=number(retention, s.retention_days), disk_quota_gb=number(quota, s.disk_quota_gb),
        vram_limit_gb=number(vram, s.vram_limit_gb), max_upload_mb=number(max_upload, s.max_upload_mb),
        max_audio_hours=number(max_hours, s.max_audio_hours), max_batch_files=number(max_files, s.max_batch_files),
        max_jobs_per_user=number(max_jobs, s.max_jobs_per_user), script=chinese or s.script,
    )


def memory_md(ctx: AppContext) -> str:
    """The GPU memory panel: a Markdown table of the figures, the loaded model and the queue length."""
    stats = gpu.memory_stats()
    engine = loaded_engine()
    model_line = f"{engine.name} on {engine.device}" if engine is not None else "none loaded"
    used = stats.nvml_used if stats.nvml_used is not None else stats.allocated
    cap = ctx.settings.vram_limit_gb
    budget = getattr(engine, "budget", None)
    learned = "none yet" if budget is None or budget.cap.ceiling is None else \
        f"{budget.cap.ceiling} inputs · cost × {budget.cap.factor:.2f}"
    rows = [
        ("Device", stats.device), ("Model", model_line),
        ("VRAM cap", f"{cap:g} GB" if cap else "whole card"),
        ("This process (NVML)", fmt_bytes(stats.process_used)),
        ("Accounting", stats.accounting or "unavailable (no NVML)"),
        ("Used" + (" (all processes, NVML)" if stats.nvml_used is not None else " (torch)"), fmt_bytes(used)),
        ("Allocated (torch)", fmt_bytes(stats.allocated)), ("Reserved", fmt_bytes(stats.reserved)),
        ("Peak", fmt_bytes(stats.peak)), ("Free", fmt_bytes(stats.free)), ("Total", fmt_bytes(stats.total)),
        ("Learned batch limit (after out-of-memory)", learned),
        ("Jobs in queue", str(ctx.queue.queue_length())),
    ]
    if stats.device == "cpu":  # no GPU: its nine rows would all read 0 B
        return (f"**No GPU on this server:** jobs run on the CPU. Model: {md_text(model_line)} · jobs in queue: "
                f"{ctx.queue.queue_length()}. GPU memory figures and chart lines are left out.")
    return "| | Memory |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def charts(ctx: AppContext, ring: metrics.Ring = metrics.RING) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The chart's data (memory in GiB, queue depth) from the sampler's ring buffer, with a
    sample taken now when the newest is older than one sampling period (or there is none)."""
    samples = ring.samples()
    if not samples or time.time() - samples[-1].time > metrics.SAMPLE_SECONDS:
        samples.append(metrics.take_sample(ctx.queue))
    memory_rows, queue_rows = [], []
    gpu_present = gpu.memory_stats().device != "cpu"  # without one, a GPU line is always zero
    for s in samples:
        when = datetime.fromtimestamp(s.time)
        for series, value in (("GPU, this process", s.gpu_process if gpu_present else None),
                              ("GPU, whole card", s.gpu_device_used if gpu_present else None),
                              ("Host RSS", s.host_rss)):
            if value is not None:
                memory_rows.append({"time": when, "GiB": round(value / 2**30, 3), "series": series})
        queue_rows.append({"time": when, "jobs": s.queue_depth, "series": "waiting + running"})
    return (pd.DataFrame(memory_rows, columns=["time", "GiB", "series"]),
            pd.DataFrame(queue_rows, columns=["time", "jobs", "series"]))


def _cleanup_report(result: dict) -> str:
    before, after = result["before"], result["after"]
    if before.get("device") == "cpu":  # nothing on a GPU to free: no rows of 0 B
        return "**Deep GPU cleanup done.** No GPU on this server, so there was no GPU memory to free."
    return (f"**Deep GPU cleanup done.** Freed {fmt_bytes(result['freed_bytes'])} "
            f"({result['freed_bytes']:,} bytes).  \nReserved: {fmt_bytes(before['reserved'])} → "
            f"{fmt_bytes(after['reserved'])} · allocated: {fmt_bytes(before['allocated'])} → "
            f"{fmt_bytes(after['allocated'])}")
