"""A prediction process of ``gliorad serve``: it loads the bundle once, then runs one job at a
time as the service sends them (:func:`main`), with :func:`gliorad.predict.predict_patient`.

It talks to the service over a pipe: it sends ``("ready", pid)`` once the bundle is loaded (or
``("fatal", message)``), then for each job ``("progress", step)`` messages and one
``("done", None)`` or ``("failed", kind, problems)`` (``kind``: ``input`` for a problem of the
upload, ``internal`` for a bug, whose traceback goes to the job's ``error.log``). The service
kills the process when a job runs past its time limit or is deleted, and starts a new one; the
process ends when the pipe closes (the service stopped).
"""

from __future__ import annotations

import os
import signal
import traceback
from pathlib import Path
from typing import Any

__all__ = ["main", "run_job"]


def _dicom_to_patient(task: dict[str, Any], bundle: Any, step: Any) -> Path:
    """A DICOM study for a bundle whose run did not preprocess: the chosen series (identified by
    the bundle's ``cohort.dicom`` rules) written as NIfTI where ``predict`` looks for them."""
    import SimpleITK as sitk

    from gliorad.config import DicomConfig
    from gliorad.dicom import identify_study, read_series
    from gliorad.errors import GlioradInputError
    from gliorad.serve.uploads import place_sequences

    step("converting")
    cohort = bundle.config.get("cohort") if isinstance(bundle.config, dict) else None
    cfg = DicomConfig.model_validate((cohort or {}).get("dicom") or {})
    ident = identify_study(task["study_dir"], cfg, bundle.sequences)
    if not ident.ok:
        raise GlioradInputError(ident.problems)
    tmp = Path(task["job_dir"]) / "upload" / "converted"
    tmp.mkdir(parents=True, exist_ok=True)
    files = {}
    for seq in bundle.sequences:
        files[seq] = tmp / f"{seq}.nii.gz"
        sitk.WriteImage(read_series(ident.chosen[seq]), str(files[seq]), True)
    mapping = (bundle.inputs.get("naming") or {}).get("mapping") or None
    return place_sequences(files, Path(task["job_dir"]) / "upload" / "patient", task["pid"], mapping)


def run_job(task: dict[str, Any], bundle: Any, step: Any) -> dict[str, Any]:
    """One job: the patient folder (DICOM converted when needed), ``predict_patient`` into
    ``out_dir``, then the viewer's volumes. Returns the prediction."""
    from gliorad.predict import predict_patient
    from gliorad.serve.viewer import write_viewer

    patient = (_dicom_to_patient(task, bundle, step) if task.get("convert_dicom")
               else Path(task["patient_dir"]))
    out = Path(task["out_dir"])
    result = predict_patient(patient, bundle, out, clinical=task.get("clinical") or {},
                             mask=Path(task["mask"]) if task.get("mask") else None, n_jobs=1,
                             progress=step)
    step("viewer")
    images = {s: Path(v["file"]) for s, v in result["inputs"]["sequences"].items()}
    write_viewer(images, out / "mask.nii.gz", Path(task["viewer_dir"]))
    return result


def main(conn: Any, bundle_path: str, threads: int) -> None:
    """The process's loop (the target of a spawned ``multiprocessing`` process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the service's to handle
    try:
        import torch

        torch.set_num_threads(max(1, int(threads)))
        from gliorad.bundle import load_model_bundle

        bundle = load_model_bundle(bundle_path)
    except BaseException as err:  # noqa: BLE001 - reported to the service, which stops the job
        conn.send(("fatal", f"{type(err).__name__}: {err}"))
        return
    from gliorad.errors import GlioradInputError

    conn.send(("ready", os.getpid()))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return

        def step(name: str) -> None:
            conn.send(("progress", name))

        try:
            run_job(task, bundle, step)
        except GlioradInputError as err:
            conn.send(("failed", "input", err.problems))
        except Exception as err:  # noqa: BLE001 - any bug fails this job only
            try:
                Path(task["job_dir"], "error.log").write_text(traceback.format_exc(),
                                                              encoding="utf-8")
            except OSError:
                pass
            conn.send(("failed", "internal", [f"{type(err).__name__}: {err}"]))
        else:
            conn.send(("done", None))
