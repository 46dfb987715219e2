"""The System tab: the saved settings, the GPU memory panel, Deep GPU cleanup and Unload model."""

from __future__ import annotations

import gradio as gr

from .. import api
from ..context import AppContext
from ..modules import gpu
from ..modules import settings as settings_mod
from ..modules.engines import loaded_engine
from ..modules.vads import VAD_BACKENDS
from .common import LANGUAGES, MAX_SEGMENT_CHOICES, PRIVATE, OnLoad, fmt_bytes


def build(ctx: AppContext) -> OnLoad:
    with gr.Tab("System", id="system", elem_id="tab-system"):
        with gr.Row():
            with gr.Column(scale=3, min_width=420):
                fields = _settings_fields()
                save = gr.Button("Save settings", variant="primary", elem_id="sys-save")
                save_msg = gr.Markdown(elem_id="sys-save-msg")
            with gr.Column(scale=2, min_width=320):
                gr.Markdown("### GPU memory")
                memory = gr.Markdown(elem_id="sys-memory")
                refresh = gr.Button("Refresh", size="sm", elem_id="sys-refresh")
                cleanup = gr.Button("Deep GPU cleanup", variant="primary", elem_id="sys-cleanup")
                unload = gr.Button("Unload model", variant="stop", elem_id="sys-unload")
                action = gr.Markdown(elem_id="sys-action")

    def do_save(request: gr.Request, *values):
        try:
            return ctx.update(_settings_from(ctx, *values), ctx.visitor(request))
        except (ValueError, OSError, RuntimeError, PermissionError) as exc:
            return f"**Not saved: {exc}**"

    def do_cleanup():
        return _cleanup_report(api.deep_cleanup_json(ctx.queue)), memory_md(ctx)

    def do_unload():
        _, message = ctx.queue.unload_model()
        return message, memory_md(ctx)

    save.click(do_save, inputs=fields, outputs=[save_msg], **PRIVATE)
    refresh.click(lambda: memory_md(ctx), outputs=[memory], **PRIVATE)
    cleanup.click(do_cleanup, outputs=[action, memory], **PRIVATE)
    unload.click(do_unload, outputs=[action, memory], **PRIVATE)
    return OnLoad([*fields, memory], lambda: (*_settings_values(ctx), memory_md(ctx)))


def _settings_fields() -> list:
    """The settings inputs, in the order _settings_values and _settings_from use."""
    gr.Markdown("### Settings\nSaved to the settings file and kept across restarts.")
    with gr.Row():
        device = gr.Dropdown(list(settings_mod.DEVICES), label="Device", elem_id="sys-device")
        precision = gr.Dropdown(list(settings_mod.PRECISIONS), label="Precision", elem_id="sys-precision")
        compile_box = gr.Checkbox(label="torch.compile", elem_id="sys-compile")
    model = gr.Textbox(label="Model", placeholder="empty = bundled whisper-base; or a FunASR model id / folder",
                       elem_id="sys-model")
    with gr.Row():
        margin = gr.Slider(0.0, 0.9, step=0.05, label="Batching memory margin (fraction kept free)",
                           elem_id="sys-margin")
        max_segment = gr.Dropdown(MAX_SEGMENT_CHOICES, allow_custom_value=True,
                                  label="VAD maximum segment length (auto = 45/60/90 s by length)",
                                  elem_id="sys-max-segment")
        vad = gr.Dropdown(list(VAD_BACKENDS), label="VAD inside segments (librosa: fast CPU)", elem_id="sys-vad")
    with gr.Row():
        language = gr.Dropdown(LANGUAGES, allow_custom_value=True, label="Default language",
                               elem_id="sys-language")
        # The default for each new job's ITN box; the job's own box decides for that job.
        itn_box = gr.Checkbox(label="ITN on", elem_id="sys-itn")
    hotwords = gr.Textbox(label="Default hotwords", elem_id="sys-hotwords")
    history_path = gr.Textbox(label="History database (history.db)", elem_id="sys-history")
    roots = gr.Textbox(label="Batch folders (one per line; server folders a batch may read)", lines=2,
                       elem_id="sys-roots")
    return [device, precision, compile_box, model, margin, max_segment, vad, language, itn_box, hotwords,
            history_path, roots]


def _settings_values(ctx: AppContext) -> tuple:
    s = ctx.settings
    return (s.device, s.precision, s.compile, s.model, s.memory_margin, str(s.max_segment).removesuffix(".0"),
            s.vad, s.language, s.itn, s.hotwords, s.history_path, "\n".join(s.batch_roots))


def _settings_from(ctx: AppContext, dev, prec, comp, mdl, marg, maxseg, vad_name, lang, itn_on, hot, hist,
                   root_text) -> settings_mod.AppSettings:
    """New settings from the fields; an empty field falls back to its default."""
    return ctx.settings.with_changes(
        device=dev or "auto", precision=prec or "auto", compile=bool(comp), model=mdl or "",
        memory_margin=float(marg if marg is not None else 0.15), max_segment=maxseg or "auto",
        vad=vad_name or "librosa",
        language=lang or "auto", itn=bool(itn_on), hotwords=hot or "", history_path=hist or "history.db",
        batch_roots=tuple((root_text or "").splitlines()),
    )


def memory_md(ctx: AppContext) -> str:
    """The GPU memory panel: a Markdown table of the figures, the loaded model and the queue length."""
    stats = gpu.memory_stats()
    engine = loaded_engine()
    model_line = f"{engine.name} on {engine.device}" if engine is not None else "none loaded"
    used = stats.nvml_used if stats.nvml_used is not None else stats.allocated
    rows = [
        ("Device", stats.device), ("Model", model_line),
        ("Used" + (" (all processes, NVML)" if stats.nvml_used is not None else " (torch)"), fmt_bytes(used)),
        ("Allocated (torch)", fmt_bytes(stats.allocated)), ("Reserved", fmt_bytes(stats.reserved)),
        ("Peak", fmt_bytes(stats.peak)), ("Free", fmt_bytes(stats.free)), ("Total", fmt_bytes(stats.total)),
        ("Jobs in queue", str(ctx.queue.queue_length())),
    ]
    table = "| | Memory |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    if stats.device == "cpu":
        table += "\n\nNo CUDA GPU: figures are zero."
    return table


def _cleanup_report(result: dict) -> str:
    before, after = result["before"], result["after"]
    return (f"**Deep GPU cleanup done.** Freed {fmt_bytes(result['freed_bytes'])} "
            f"({result['freed_bytes']:,} bytes).  \nReserved: {fmt_bytes(before['reserved'])} → "
            f"{fmt_bytes(after['reserved'])} · allocated: {fmt_bytes(before['allocated'])} → "
            f"{fmt_bytes(after['allocated'])}")
